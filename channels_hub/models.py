"""The transport layer: channel accounts per site, raw inbound events, the sandbox's device log.

channels_hub knows providers and addresses, not patients: messaging registers the handler that
turns a raw event into a conversation message (see channels_hub.registry).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from clinics.models import Site


class ChannelKind(models.TextChoices):
    """Mirrors patients.models.Channel (channels_hub may not import patients)."""

    SMS = "sms", _("SMS")
    WHATSAPP = "whatsapp", _("WhatsApp")
    EMAIL = "email", _("Email")


class ProviderKind(models.TextChoices):
    TWILIO = "twilio", _("Twilio")
    EMAIL = "email", _("Email (SMTP)")
    SANDBOX = "sandbox", _("Sandbox (demo, nothing leaves the server)")


class ChannelAccount(models.Model):
    """How a site sends on one channel: provider, sender address, and where its credentials live.

    Credentials never sit in the database: `credentials_env` names an environment prefix, e.g.
    "TWILIO" -> TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN, "TWILIO_ROMA" -> TWILIO_ROMA_ACCOUNT_SID / ….
    """

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="channel_accounts")
    channel = models.CharField(_("channel"), max_length=10, choices=ChannelKind.choices)
    provider = models.CharField(_("provider"), max_length=10, choices=ProviderKind.choices)
    sender = models.CharField(
        _("sender"), max_length=254, blank=True,
        help_text=_("E.164 number for SMS/WhatsApp, or the From address for email."),
    )
    messaging_service_sid = models.CharField(_("messaging service SID"), max_length=34, blank=True)
    credentials_env = models.CharField(_("credentials environment prefix"), max_length=50, default="TWILIO", blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("channel account")
        verbose_name_plural = _("channel accounts")
        constraints = [
            models.UniqueConstraint(
                fields=["site", "channel"], condition=models.Q(is_active=True), name="one_active_account_per_site_channel"
            )
        ]

    def __str__(self) -> str:
        return f"{self.site} · {self.get_channel_display()} · {self.get_provider_display()}"

    def clean(self):
        if self.provider == ProviderKind.EMAIL and self.channel != ChannelKind.EMAIL:
            raise ValidationError({"provider": _("The email provider only sends email.")})
        if self.provider == ProviderKind.TWILIO:
            if self.channel == ChannelKind.EMAIL:
                raise ValidationError({"provider": _("Twilio sends SMS and WhatsApp, not email.")})
            if not (self.sender or self.messaging_service_sid):
                raise ValidationError({"sender": _("Give a sender number or a messaging service SID.")})


class InboundKind(models.TextChoices):
    MESSAGE = "message", _("Incoming message")
    STATUS = "status", _("Status callback")


class InboundEvent(models.Model):
    """A webhook exactly as received, stored before anything else happens.

    Unique on (provider, external id, status): a provider's retry of the same callback is a no-op.
    """

    provider = models.CharField(max_length=10, choices=ProviderKind.choices)
    kind = models.CharField(max_length=10, choices=InboundKind.choices)
    external_id = models.CharField(max_length=64)
    status = models.CharField(max_length=20, blank=True)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    failures = models.PositiveIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)  # after a failure: when the relay tries again

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "external_id", "status"], name="inbound_event_once")
        ]
        indexes = [models.Index(fields=["processed_at", "received_at"], name="inbound_unprocessed")]

    def __str__(self) -> str:
        return f"{self.provider} {self.kind} {self.external_id} {self.status}"


class SandboxMessage(models.Model):
    """What the sandbox provider 'delivered': the patient-device view in the console reads these."""

    channel = models.CharField(max_length=10, choices=ChannelKind.choices)
    to = models.CharField(max_length=254, db_index=True)
    sender = models.CharField(max_length=254)
    subject = models.CharField(max_length=300, blank=True)
    body = models.TextField()
    provider_id = models.CharField(max_length=64, unique=True)
    reference = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.channel} -> {self.to}"
