from django.utils.translation import gettext as _

from messaging.models import Direction, Message
from patients.registry import TimelineEntry, register_export_section, register_timeline_source


def _message_entries(patient_ids, limit):
    rows = Message.objects.filter(patient_id__in=patient_ids).order_by("-created_at", "-id")[:limit]
    for m in rows:
        if m.direction == Direction.INBOUND:
            title = _("Message received (%(channel)s)") % {"channel": m.get_channel_display()}
        else:
            title = _("Message %(status)s (%(channel)s)") % {
                "status": m.get_status_display().lower(), "channel": m.get_channel_display() or "—"}
        yield TimelineEntry(at=m.created_at, kind="message", title=title, detail=m.body[:140],
                            extra={"message_id": m.pk, "status": m.status})


def _export_messages(patient, patient_ids):
    return [
        {"at": m.created_at.isoformat(), "direction": m.direction, "channel": m.channel, "status": m.status,
         "purpose": m.purpose, "body": m.body, "subject": m.subject}
        for m in Message.objects.filter(patient_id__in=patient_ids).order_by("created_at", "id")
    ]


register_timeline_source("message", _message_entries)
register_export_section("messages", _export_messages)
