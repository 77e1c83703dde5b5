"""Templates, conversations, messages (the outbox) and their delivery attempts."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from clinics.models import Language, Site
from consent.models import Purpose
from patients.models import Channel, Patient


class MessageTemplate(models.Model):
    """One wording of a message, per name, channel and language.

    Placeholders are `{{ name }}` and must be among the variables allowed for the purpose
    (messaging.rendering.ALLOWED_VARIABLES): bodies carry time, place and a portal link, never
    clinical details. Channel empty = any channel without a wording of its own.
    """

    name = models.SlugField(_("name"), max_length=80)
    purpose = models.CharField(_("purpose"), max_length=10, choices=Purpose.choices)
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices, blank=True)
    language = models.CharField(_("language"), max_length=8, choices=Language.choices)
    subject = models.CharField(_("subject (email)"), max_length=200, blank=True)
    body = models.TextField(_("body"))
    whatsapp_content_sid = models.CharField(
        _("WhatsApp template ContentSid"), max_length=34, blank=True,
        help_text=_("The approved Twilio Content template used outside the 24-hour window (HX…)."),
    )
    whatsapp_variables = models.JSONField(
        _("WhatsApp template variables"), default=list, blank=True,
        help_text=_('Context names for the template\'s {{1}}, {{2}}, … in order, e.g. ["first_name", "when"].'),
    )
    is_active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("message template")
        verbose_name_plural = _("message templates")
        constraints = [
            models.UniqueConstraint(fields=["name", "channel", "language"], name="template_unique_variant"),
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.channel or '*'}/{self.language}]"

    def clean(self):
        from messaging.rendering import validate_template

        validate_template(self)


class Conversation(models.Model):
    """One per patient across channels; senders we cannot identify get one per address."""

    patient = models.OneToOneField(Patient, null=True, blank=True, on_delete=models.PROTECT, related_name="conversation")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="conversations")
    # For unidentified senders (or a shared phone we could not attribute): the address they wrote from.
    address = models.CharField(max_length=254, blank=True, db_index=True)
    candidate_patients = models.ManyToManyField(Patient, blank=True, related_name="+")
    last_message_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    whatsapp_window_ends_at = models.DateTimeField(null=True, blank=True)
    needs_attention = models.BooleanField(default=False, db_index=True)
    # The open flow that waits for the patient's answer (a reminder confirmation, a survey score).
    flow = models.CharField(max_length=50, blank=True)
    flow_state = models.JSONField(default=dict, blank=True)
    flow_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # A merge moves the loser's conversation only if the survivor has none (see merge_copy).
    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["site", "address"], condition=models.Q(patient__isnull=True), name="one_unidentified_per_address"
            )
        ]

    def __str__(self) -> str:
        return f"conversation {self.pk} ({self.patient or self.address})"

    @classmethod
    def merge_copy(cls, *, survivor: Patient, loser: Patient) -> int:
        """Merging: the loser's messages join the survivor's conversation (created if missing)."""
        lost = cls.objects.filter(patient=loser).first()
        if lost is None:
            return 0
        kept = cls.objects.filter(patient=survivor).first()
        if kept is None:
            cls.objects.filter(pk=lost.pk).update(patient=survivor)
            return 1
        moved = Message.objects.filter(conversation=lost).update(conversation=kept)
        lost.patient = None
        lost.address = f"merged:{loser.pk}"
        lost.save(update_fields=["patient", "address"])
        return moved


class MessageStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    DELIVERED = "delivered", _("Delivered")
    READ = "read", _("Read")
    FAILED = "failed", _("Failed")
    UNDELIVERED = "undelivered", _("Undelivered")
    UNKNOWN = "unknown", _("Unknown (being checked)")
    RECEIVED = "received", _("Received")


# Status callbacks only move a message forward along this order.
STATUS_RANK = {
    MessageStatus.QUEUED: 0, MessageStatus.SENDING: 1, MessageStatus.UNKNOWN: 1, MessageStatus.SENT: 2,
    MessageStatus.FAILED: 3, MessageStatus.UNDELIVERED: 3, MessageStatus.DELIVERED: 4, MessageStatus.READ: 5,
    MessageStatus.RECEIVED: 9,
}


class Direction(models.TextChoices):
    OUTBOUND = "out", _("Outbound")
    INBOUND = "in", _("Inbound")


class Message(models.Model):
    """An outbound message is its own outbox row: written in the sender's transaction, claimed by
    workers, each delivery attempt recorded. Inbound messages are rows too (status received)."""

    conversation = models.ForeignKey(Conversation, on_delete=models.PROTECT, related_name="messages")
    patient = models.ForeignKey(Patient, null=True, blank=True, on_delete=models.PROTECT, related_name="messages")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices, blank=True)
    purpose = models.CharField(_("purpose"), max_length=10, choices=Purpose.choices, blank=True)
    urgent = models.BooleanField(default=False)
    compliance = models.BooleanField(
        default=False, help_text=_("A reply to STOP/START/HELP: the one message sent regardless of consent.")
    )
    template = models.CharField(max_length=80, blank=True)
    language = models.CharField(max_length=8, blank=True)
    context = models.JSONField(default=dict, blank=True)
    subject = models.CharField(max_length=300, blank=True)
    body = models.TextField(blank=True)
    html = models.TextField(blank=True)
    content_sid = models.CharField(max_length=34, blank=True)
    content_variables = models.JSONField(default=dict, blank=True)
    to_address = models.CharField(max_length=254, blank=True)
    from_address = models.CharField(max_length=254, blank=True)
    account = models.ForeignKey("channels_hub.ChannelAccount", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    status = models.CharField(_("status"), max_length=12, choices=MessageStatus.choices, db_index=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    # SHA-256 of the validated API request that created it (POST /api/v1/messages/): a retry with
    # the same Idempotency-Key must match it. Null for messages queued by features.
    request_fingerprint = models.CharField(max_length=64, null=True, blank=True, editable=False)
    provider = models.CharField(max_length=10, blank=True)
    provider_id = models.CharField(max_length=64, null=True, blank=True)
    # Channels tried and why others were skipped: [{"channel": "whatsapp", "skipped": "no_opt_in"}, …]
    routing = models.JSONField(default=list, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempt_count = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_id"], name="message_provider_id_once"),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="message_due",
                         condition=models.Q(status="queued")),
            models.Index(fields=["status", "claimed_until"], name="message_claimed",
                         condition=models.Q(status__in=["sending", "unknown"])),
            models.Index(fields=["conversation", "-created_at"], name="message_conversation"),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.channel} {self.status} #{self.pk}"

    def routing_steps(self) -> list[dict]:
        """`routing` for people: channel name, what happened, and why in their language."""
        labels = dict(Channel.choices)
        steps = []
        for step in self.routing or []:
            code = step.get("skipped") or step.get("failed") or ""
            outcome = "chosen" if step.get("chosen") else ("failed" if step.get("failed") else "skipped")
            steps.append({"channel": labels.get(step.get("channel"), step.get("channel")), "outcome": outcome,
                          "reason": routing_reason(code) if code else ""})
        return steps


ROUTING_REASONS = {
    "no_opt_in": _("no opt-in"),
    "revoked": _("consent withdrawn"),
    "merged": _("merged record"),
    "no_valid_address": _("no valid address"),
    "no_channel_account": _("channel not set up at this site"),
    "no_template": _("no wording for this channel"),
    "outside_session_window": _("outside the WhatsApp 24-hour window, no approved template"),
    "body_too_long": _("message too long for this channel"),
    "consent_revoked": _("consent withdrawn before sending"),
    "consent_no_opt_in": _("no opt-in at sending time"),
    "consent_merged": _("merged record"),
}


def routing_reason(code: str) -> str:
    return str(ROUTING_REASONS.get(code, code))


class AttemptOutcome(models.TextChoices):
    STARTED = "started", _("In progress")
    ACCEPTED = "accepted", _("Accepted by provider")
    RETRY = "retry", _("Temporary error, will retry")
    FAILED = "failed", _("Refused by provider")
    UNKNOWN = "unknown", _("Outcome unknown")
    FOUND = "found", _("Found at provider after unknown outcome")
    NOT_FOUND = "not_found", _("Not at provider; will resend")


class MessageAttempt(models.Model):
    """One try at handing a message to a provider. Written 'started' before the call is made."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    channel = models.CharField(max_length=10, choices=Channel.choices)
    provider = models.CharField(max_length=10)
    mode = models.CharField(max_length=10, blank=True)  # "text" or "template" (WhatsApp)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=AttemptOutcome.choices)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    provider_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["message", "number"]
        constraints = [models.UniqueConstraint(fields=["message", "number"], name="attempt_number_once")]

    def __str__(self) -> str:
        return f"attempt {self.number} of message {self.message_id}: {self.outcome}"
