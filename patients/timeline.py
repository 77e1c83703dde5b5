"""The profile's own contribution to the timeline and the export."""

from django.utils.translation import gettext as _

from patients.models import ContactPoint, PatientChange, PatientIdentifier
from patients.registry import TimelineEntry, register_export_section, register_timeline_source


def _profile_changes(patient_ids: list[int], limit: int):
    rows = PatientChange.objects.filter(patient_id__in=patient_ids).order_by("-at", "-id")[:limit]
    for row in rows:
        yield TimelineEntry(
            at=row.at, kind="profile", title=_(row.summary),
            detail=", ".join(sorted(row.changes)), actor=row.actor_label or _(row.get_source_display()),
        )


def _export_profile(patient):
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
        "created_at": patient.created_at.isoformat(),
    }


def _export_contact_points(patient):
    return [
        {"kind": c.kind, "value": c.value, "primary": c.is_primary, "verified": c.is_verified, "valid": c.is_valid,
         "invalid_reason": c.invalid_reason}
        for c in ContactPoint.objects.filter(patient=patient)
    ]


def _export_identifiers(patient):
    return [{"system": i.system, "value": i.value} for i in PatientIdentifier.objects.filter(patient=patient)]


def _export_changes(patient):
    return [
        {"at": c.at.isoformat(), "source": c.source, "summary": c.summary, "changes": c.changes}
        for c in PatientChange.objects.filter(patient=patient).order_by("at")
    ]


register_timeline_source("profile", _profile_changes)
register_export_section("profile", _export_profile)
register_export_section("contact_points", _export_contact_points)
register_export_section("identifiers", _export_identifiers)
register_export_section("profile_changes", _export_changes)
