from django.contrib import admin

from patients.models import ContactPoint, Patient, PatientIdentifier


class ContactPointInline(admin.TabularInline):
    model = ContactPoint
    extra = 0


class IdentifierInline(admin.TabularInline):
    model = PatientIdentifier
    extra = 0


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ["family_name", "given_name", "date_of_birth", "home_site", "language"]
    list_filter = ["home_site", "language"]
    search_fields = ["search_name"]
    readonly_fields = ["merged_into", "search_name"]
    inlines = [ContactPointInline, IdentifierInline]
    raw_id_fields = ["portal_user"]

    # Patients change through the console and the API, which normalise phones, keep the search
    # name, record the change and log the read; the admin only looks.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
