"""The consent ledger and the PHI access log. Both are append-only: rows are written, never changed."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from clinics.models import ApiKey
from patients.models import Channel, Patient


class Purpose(models.TextChoices):
    CARE = "care", _("Care and appointment reminders")
    SURVEYS = "surveys", _("Satisfaction surveys")
    MARKETING = "marketing", _("News and offers")


class ConsentAction(models.TextChoices):
    GRANT = "grant", _("Granted")
    REVOKE = "revoke", _("Withdrawn")


class ConsentSource(models.TextChoices):
    PORTAL = "portal", _("Patient portal")
    STAFF = "staff", _("Staff")
    KEYWORD = "keyword", _("Reply keyword")
    IMPORT = "import", _("Import")
    API = "api", _("API")
    MERGE = "merge", _("Merged record")
    PROVIDER = "provider", _("Provider report")


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError(f"{self.model.__name__} is append-only")

    def delete(self):
        raise TypeError(f"{self.model.__name__} is append-only")


class AppendOnlyModel(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError(f"{type(self).__name__} is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is append-only")


class ConsentEvent(AppendOnlyModel):
    """One statement of consent: who, which channel and purpose, granted or withdrawn, how, when.

    The current state is the latest event per (channel, purpose); see consent.selectors.
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="consent_events")
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    purpose = models.CharField(_("purpose"), max_length=10, choices=Purpose.choices)
    action = models.CharField(_("action"), max_length=6, choices=ConsentAction.choices)
    source = models.CharField(_("source"), max_length=10, choices=ConsentSource.choices)
    wording_version = models.CharField(_("wording version"), max_length=50, blank=True)
    wording_text = models.TextField(_("wording shown"), blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    actor_label = models.CharField(max_length=200, blank=True)
    at = models.DateTimeField(_("time"), db_index=True)
    recorded_at = models.DateTimeField(auto_now_add=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)
    # Set on copies made when a duplicate record is merged in.
    copied_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        verbose_name = _("consent event")
        verbose_name_plural = _("consent events")
        indexes = [models.Index(fields=["patient", "channel", "purpose", "at"], name="consent_state")]
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.patient_id} {self.channel}/{self.purpose} {self.action} @ {self.at:%Y-%m-%d %H:%M}"

    @classmethod
    def merge_copy(cls, *, survivor: Patient, loser: Patient) -> int:
        """On merge the ledger of the loser is copied onto the survivor; the originals stay."""
        copies = [
            cls(
                patient=survivor, channel=e.channel, purpose=e.purpose, action=e.action, source=ConsentSource.MERGE,
                wording_version=e.wording_version, wording_text=e.wording_text, actor=e.actor, api_key=e.api_key,
                actor_label=e.actor_label, at=e.at, ip_address=e.ip_address, note=e.note, copied_from=e,
            )
            for e in cls.objects.filter(patient=loser).order_by("at", "id")
        ]
        cls.objects.bulk_create(copies)
        return len(copies)


ACCESS_LABELS = {
    "view_360": _("Patient 360 page"),
    "api_detail": _("API: patient record"),
    "api_list": _("API: patient list"),
    "export": _("Data export"),
    "portal_export": _("Data export by the patient"),
    "timeline": _("Timeline"),
    "access_log": _("Access log"),
    "contact_points": _("Contact points"),
    "consents": _("Consents"),
    "consent": _("Consents"),
    "preferences": _("Contact preferences"),
    "duplicates": _("Possible duplicates"),
    "message": _("A message"),
    "messages": _("Messages (a list page)"),
    "conversation": _("Conversation"),
    "profile": _("Profile (edit form)"),
    "merge_review": _("Merge review"),
    "device": _("Sandbox device view"),
}


class AccessLog(AppendOnlyModel):
    """Who read which patient's record, what, when and from where."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="access_log")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    actor_label = models.CharField(max_length=200)
    what = models.CharField(_("what"), max_length=50)
    at = models.DateTimeField(_("time"), auto_now_add=True, db_index=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    path = models.CharField(max_length=300, blank=True)

    # The log records reads of that record as it was; a merge does not rewrite history.
    merge_strategy = "keep"

    class Meta:
        verbose_name = _("access log entry")
        verbose_name_plural = _("access log")
        indexes = [models.Index(fields=["patient", "-at"], name="accesslog_patient")]
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.actor_label} read {self.what} of patient {self.patient_id}"

    @property
    def what_label(self) -> str:
        return str(ACCESS_LABELS.get(self.what, self.what))
