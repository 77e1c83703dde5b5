from django.contrib import admin
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from messaging.models import Conversation, Message, MessageAttempt, MessageTemplate
from messaging.rendering import sms_segments


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "purpose", "channel", "language", "segments", "whatsapp_content_sid", "is_active"]
    list_filter = ["purpose", "channel", "language", "is_active"]
    search_fields = ["name", "body"]
    readonly_fields = ["segments_detail"]

    @admin.display(description=_("SMS segments"))
    def segments(self, obj):
        return sms_segments(obj.body)["segments"]

    @admin.display(description=_("Length"))
    def segments_detail(self, obj):
        info = sms_segments(obj.body or "")
        return format_html(
            "{} characters, {} → {} SMS segment(s) before placeholders are filled",
            info["characters"], info["encoding"], info["segments"],
        )


class AttemptInline(admin.TabularInline):
    model = MessageAttempt
    extra = 0
    can_delete = False
    readonly_fields = [f.name for f in MessageAttempt._meta.fields]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "direction", "channel", "status", "purpose", "template", "to_address", "created_at"]
    list_filter = ["direction", "status", "channel", "purpose"]
    search_fields = ["idempotency_key", "provider_id", "to_address"]
    raw_id_fields = ["conversation", "patient", "created_by", "account"]
    inlines = [AttemptInline]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "patient", "site", "address", "last_message_at", "needs_attention", "flow"]
    list_filter = ["site", "needs_attention"]
    raw_id_fields = ["patient", "candidate_patients"]
