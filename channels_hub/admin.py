from django.contrib import admin

from channels_hub.models import ChannelAccount, InboundEvent, SandboxMessage


@admin.register(ChannelAccount)
class ChannelAccountAdmin(admin.ModelAdmin):
    list_display = ["site", "channel", "provider", "sender", "messaging_service_sid", "credentials_env", "is_active"]
    list_filter = ["provider", "channel", "is_active", "site"]


@admin.register(InboundEvent)
class InboundEventAdmin(admin.ModelAdmin):
    list_display = ["provider", "kind", "external_id", "status", "received_at", "processed_at", "error"]
    list_filter = ["provider", "kind"]
    search_fields = ["external_id"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SandboxMessage)
class SandboxMessageAdmin(admin.ModelAdmin):
    list_display = ["channel", "to", "sender", "created_at"]
    search_fields = ["to", "reference"]
