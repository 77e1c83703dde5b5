from django.utils.translation import gettext as _

from consent.models import AccessLog, ConsentAction, ConsentEvent
from patients.registry import TimelineEntry, register_export_section, register_timeline_source


def _consent_events(patient_ids):
    # After a merge the survivor holds copies of the loser's events: each statement once, the original.
    return ConsentEvent.objects.filter(patient_id__in=patient_ids).exclude(copied_from__patient_id__in=patient_ids)


def _consent_entries(patient_ids, limit):
    for e in _consent_events(patient_ids).order_by("-at", "-id")[:limit]:
        verb = _("granted") if e.action == ConsentAction.GRANT else _("withdrawn")
        yield TimelineEntry(
            at=e.at, kind="consent",
            title=_("Consent %(verb)s: %(channel)s, %(purpose)s")
            % {"verb": verb, "channel": e.get_channel_display(), "purpose": e.get_purpose_display()},
            detail=e.get_source_display(), actor=e.actor_label,
        )


def _access_entries(patient_ids, limit):
    for a in AccessLog.objects.filter(patient_id__in=patient_ids).order_by("-at", "-id")[:limit]:
        yield TimelineEntry(at=a.at, kind="access", title=_("Record viewed: %(what)s") % {"what": a.what_label},
                            detail=a.ip_address or "", actor=a.actor_label)


# Export sections gather over the merged records too, as the timeline does: the access log of a
# record merged into this one stays on that record, and its consent statements are the originals there.
def _export_consents(patient, patient_ids):
    return [
        {"at": e.at.isoformat(), "channel": e.channel, "purpose": e.purpose, "action": e.action, "source": e.source,
         "wording_version": e.wording_version, "wording_text": e.wording_text, "by": e.actor_label}
        for e in _consent_events(patient_ids).order_by("at", "id")
    ]


def _export_access(patient, patient_ids):
    return [
        {"at": a.at.isoformat(), "by": a.actor_label, "what": a.what, "ip_address": a.ip_address}
        for a in AccessLog.objects.filter(patient_id__in=patient_ids).order_by("at", "id")
    ]


register_timeline_source("consent", _consent_entries)
register_timeline_source("access", _access_entries)
register_export_section("consents", _export_consents)
register_export_section("access_log", _export_access)
