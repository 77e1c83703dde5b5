from django.contrib import admin

from consent.models import AccessLog, ConsentEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyAdmin):
    list_display = ["patient", "channel", "purpose", "action", "source", "actor_label", "at"]
    list_filter = ["channel", "purpose", "action", "source"]
    raw_id_fields = ["patient"]


@admin.register(AccessLog)
class AccessLogAdmin(ReadOnlyAdmin):
    list_display = ["patient", "actor_label", "what", "ip_address", "at"]
    list_filter = ["what"]
    raw_id_fields = ["patient"]
