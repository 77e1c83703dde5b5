from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = _("Messaging")

    def ready(self):
        from channels_hub.inbound import set_handlers
        from messaging import timeline  # noqa: F401  registers timeline and export sections
        from messaging.inbound import handle_inbound_message, handle_status_update

        set_handlers(message=handle_inbound_message, status=handle_status_update)
