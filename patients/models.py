"""Patient 360: the patient, how to reach them, who they are in other systems, what changed."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from clinics.models import Language, Organization, Site, validate_time_zone

MAX_NOTES = 5000


class Channel(models.TextChoices):
    """Ways to reach a patient. Shared by consent, messaging and channels_hub."""

    SMS = "sms", _("SMS")
    WHATSAPP = "whatsapp", _("WhatsApp")
    EMAIL = "email", _("Email")


def validate_channel_order(value) -> None:
    if not isinstance(value, list) or any(v not in Channel.values for v in value) or len(set(value)) != len(value):
        raise ValidationError(
            _("Channel order must list distinct channels among: %(channels)s."),
            params={"channels": ", ".join(Channel.values)},
        )


def default_channel_order() -> list[str]:
    return [Channel.WHATSAPP, Channel.SMS, Channel.EMAIL]


EARLIEST_BIRTH_DATE = dt.date(1900, 1, 1)


def validate_date_of_birth(value: dt.date) -> None:
    # "Today" where it is latest on Earth (UTC+14): a baby born today in any time zone is not in the future.
    latest = (timezone.now() + dt.timedelta(hours=14)).date()
    if value > latest:
        raise ValidationError(_("The date of birth cannot be in the future."), code="future")
    if value < EARLIEST_BIRTH_DATE:
        raise ValidationError(
            _("The date of birth cannot be before %(date)s."), code="too_early",
            params={"date": EARLIEST_BIRTH_DATE.isoformat()},
        )


class Sex(models.TextChoices):
    FEMALE = "female", _("Female")
    MALE = "male", _("Male")
    INTERSEX = "intersex", _("Intersex")
    UNKNOWN = "unknown", _("Not stated")


class Patient(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="patients")
    home_site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="patients", verbose_name=_("home site"))
    given_name = models.CharField(_("given name"), max_length=100)
    family_name = models.CharField(_("family name"), max_length=100)
    preferred_name = models.CharField(_("preferred name"), max_length=100, blank=True)
    date_of_birth = models.DateField(_("date of birth"), null=True, blank=True, db_index=True,
                                     validators=[validate_date_of_birth])
    sex = models.CharField(_("sex"), max_length=10, choices=Sex.choices, default=Sex.UNKNOWN)
    gender_identity = models.CharField(
        _("gender identity"), max_length=100, blank=True, help_text=_("As the patient states it.")
    )
    pronouns = models.CharField(_("pronouns"), max_length=50, blank=True)
    language = models.CharField(_("language"), max_length=8, choices=Language.choices, default=Language.EN)
    time_zone = models.CharField(_("time zone"), max_length=64, blank=True, validators=[validate_time_zone],
                                 help_text=_("Empty: the home site's time zone."))
    preferred_channels = models.JSONField(
        _("preferred channel order"), default=default_channel_order, validators=[validate_channel_order]
    )
    quiet_hours_start = models.TimeField(_("quiet hours start"), default=dt.time(21, 0))
    quiet_hours_end = models.TimeField(_("quiet hours end"), default=dt.time(8, 0))
    notes = models.TextField(_("notes"), blank=True, validators=[MaxLengthValidator(MAX_NOTES)])
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_from", editable=False
    )
    # Folded "given family preferred" for search (trigram-indexed on PostgreSQL).
    search_name = models.CharField(max_length=320, editable=False, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("patient")
        verbose_name_plural = _("patients")
        indexes = [models.Index(fields=["home_site", "family_name", "given_name"], name="patient_site_name")]

    def __str__(self) -> str:
        return self.full_name

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()

    @property
    def is_merged(self) -> bool:
        return self.merged_into_id is not None

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone or self.home_site.time_zone)

    def in_quiet_hours(self, at: dt.datetime) -> bool:
        local = at.astimezone(self.tz).time()
        start, end = self.quiet_hours_start, self.quiet_hours_end
        if start == end:
            return False
        if start < end:
            return start <= local < end
        return local >= start or local < end

    def clean(self):
        if self.home_site_id and self.organization_id and self.home_site.organization_id != self.organization_id:
            raise ValidationError({"home_site": _("The home site belongs to another organisation.")})


class ContactKind(models.TextChoices):
    PHONE = "phone", _("Phone")
    EMAIL = "email", _("Email")
    WHATSAPP = "whatsapp", _("WhatsApp")


class ContactPoint(models.Model):
    """One way to reach a patient. Phones are E.164, emails lower-case.

    The same phone may belong to several patients (a parent and children): the value is not unique
    across patients, only per patient. A number that bounced is marked invalid, never deleted.
    """

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="contact_points")
    kind = models.CharField(_("kind"), max_length=10, choices=ContactKind.choices)
    value = models.CharField(_("value"), max_length=254)
    phone_type = models.CharField(_("phone type"), max_length=10, blank=True)
    label = models.CharField(_("label"), max_length=50, blank=True)
    is_primary = models.BooleanField(_("primary"), default=False)
    is_verified = models.BooleanField(_("verified"), default=False)
    is_valid = models.BooleanField(_("valid"), default=True)
    invalid_reason = models.CharField(_("why invalid"), max_length=200, blank=True)
    invalidated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("contact point")
        verbose_name_plural = _("contact points")
        constraints = [
            models.UniqueConstraint(fields=["patient", "kind", "value"], name="contactpoint_unique_per_patient"),
        ]
        indexes = [models.Index(fields=["kind", "value"], name="contactpoint_lookup")]
        ordering = ["kind", "-is_primary", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.value}"


class PatientIdentifier(models.Model):
    """An identifier in another system, e.g. the MRN in the EHR."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="identifiers")
    system = models.CharField(_("system"), max_length=100, default="mrn")
    value = models.CharField(_("value"), max_length=100)

    class Meta:
        verbose_name = _("identifier")
        verbose_name_plural = _("identifiers")
        constraints = [models.UniqueConstraint(fields=["patient", "system", "value"], name="identifier_unique")]
        indexes = [models.Index(fields=["value"], name="identifier_value")]

    def __str__(self) -> str:
        return f"{self.system}:{self.value}"


class ChangeSource(models.TextChoices):
    STAFF = "staff", _("Staff")
    PORTAL = "portal", _("Patient portal")
    API = "api", _("API")
    IMPORT = "import", _("Import")
    SYSTEM = "system", _("System")


class PatientChange(models.Model):
    """A change to the profile: {field: [old, new]}. Feeds the timeline."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="changes")
    at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_label = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=10, choices=ChangeSource.choices)
    summary = models.CharField(max_length=200)
    changes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return self.summary

    @property
    def summary_display(self) -> str:
        """The summary in the reader's language (it is stored as the English source text)."""
        from django.utils.translation import gettext

        return gettext(self.summary)


class PatientMerge(models.Model):
    """The record of a merge: the loser stays, pointing at the survivor."""

    survivor = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="merges_won")
    loser = models.OneToOneField(Patient, on_delete=models.PROTECT, related_name="merge_lost")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField()
    moved = models.JSONField(default=dict)

    # The merge itself does not move its own record.
    merge_strategy = "keep"

    def __str__(self) -> str:
        return f"{self.loser_id} -> {self.survivor_id}"
