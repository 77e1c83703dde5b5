"""The profile's own contribution to the timeline and the export.

Export sections gather over the patient and the records merged into it, as the timeline sources
do: rows that stayed on (or were copied from) a merged record are still this person's data.
"""

from django.core.exceptions import FieldDoesNotExist
from django.utils.translation import gettext as _

from patients.models import Channel, ContactKind, ContactPoint, Patient, PatientChange, PatientIdentifier
from patients.registry import TimelineEntry, register_export_section, register_timeline_source


def field_label(name: str) -> str:
    """What a key of PatientChange.changes is called in the reader's language (the key itself if unknown)."""
    if name == "merged_from":
        return _("merged record")
    if name in ContactKind.values:
        return str(ContactKind(name).label)
    if name in Channel.values:
        return str(Channel(name).label)
    try:
        field = Patient._meta.get_field(name)
    except FieldDoesNotExist:
        return name
    # Reverse relations have no verbose_name.
    return str(getattr(field, "verbose_name", name))


def _profile_changes(patient_ids: list[int], limit: int):
    rows = PatientChange.objects.filter(patient_id__in=patient_ids).order_by("-at", "-id")[:limit]
    for row in rows:
        yield TimelineEntry(
            at=row.at, kind="profile", title=_(row.summary),
            detail=", ".join(sorted(field_label(name) for name in row.changes)),
            actor=row.actor_label or _(row.get_source_display()),
        )


def _profile_data(patient) -> dict:
    return {
        "id": patient.pk,
        "given_name": patient.given_name,
        "family_name": patient.family_name,
        "preferred_name": patient.preferred_name,
        "date_of_birth": patient.date_of_birth.isoformat() if patient.date_of_birth else None,
        "sex": patient.sex,
        "gender_identity": patient.gender_identity,
        "pronouns": patient.pronouns,
        "language": patient.language,
        "time_zone": patient.time_zone or patient.home_site.time_zone,
        "home_site": patient.home_site.name,
        "preferences": {
            "channel_order": patient.preferred_channels,
            "quiet_hours": [patient.quiet_hours_start.isoformat(), patient.quiet_hours_end.isoformat()],
        },
        "notes": patient.notes,
        "created_at": patient.created_at.isoformat(),
    }


def _export_profile(patient, patient_ids):
    # The records merged into this one keep their own profile (names, birth date, notes): held data too.
    others = [pk for pk in patient_ids if pk != patient.pk]
    merged = Patient.objects.filter(pk__in=others).select_related("home_site").order_by("pk") if others else []
    return {**_profile_data(patient), "merged_records": [_profile_data(p) for p in merged]}


def _export_contact_points(patient, patient_ids):
    return [
        {"kind": c.kind, "value": c.value, "primary": c.is_primary, "verified": c.is_verified, "valid": c.is_valid,
         "invalid_reason": c.invalid_reason}
        for c in ContactPoint.objects.filter(patient_id__in=patient_ids)
    ]


def _export_identifiers(patient, patient_ids):
    return [
        {"system": i.system, "value": i.value}
        for i in PatientIdentifier.objects.filter(patient_id__in=patient_ids).order_by("id")
    ]


def _export_changes(patient, patient_ids):
    return [
        {"at": c.at.isoformat(), "source": c.source, "summary": c.summary, "changes": c.changes}
        for c in PatientChange.objects.filter(patient_id__in=patient_ids).order_by("at", "id")
    ]


register_timeline_source("profile", _profile_changes)
register_export_section("profile", _export_profile)
register_export_section("contact_points", _export_contact_points)
register_export_section("identifiers", _export_identifiers)
register_export_section("profile_changes", _export_changes)
