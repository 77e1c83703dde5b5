"""The outbound spine: every feature that talks to a patient calls `message_send`.

`message_send` runs inside the caller's transaction and only writes rows: a Message in status
`queued` is the outbox. Workers (messaging.dispatch) deliver it after commit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from clinics.models import Site, User
from config.errors import DomainError
from consent.models import Purpose
from consent.policy import may_contact_many
from messaging.models import Conversation, Direction, Message, MessageStatus
from messaging.routing import Lookups, candidate_channels, quiet_hours_end, route
from patients.models import Channel, Patient

MAX_KEY = 200


@dataclass
class SendRequest:
    patient: Patient
    purpose: str
    template: str
    context: dict
    idempotency_key: str
    channel: str | None = None
    not_before: dt.datetime | None = None
    urgent: bool = False
    actor: User | None = None
    request_fingerprint: str | None = None


def message_send(
    *, patient: Patient, purpose: str, template: str, context: dict, idempotency_key: str, channel: str | None = None,
    not_before: dt.datetime | None = None, urgent: bool = False, actor: User | None = None,
    request_fingerprint: str | None = None,
) -> Message:
    """Queue one message to `patient`. Same idempotency key, same Message: never a second one.

    Picks the channel (explicit, else the patient's preference order) among those consent allows
    and that have a valid address, a channel account and a wording; defers it out of the patient's
    quiet hours unless `urgent`; renders it in the patient's language (then the site's, then
    English). With no usable channel the Message is stored as failed with the reasons, so staff
    see why. Raises ValidationError naming the field for bad input.

    With `request_fingerprint` (a hash of the caller's whole request, stored on the Message), the
    key must come back with the same fingerprint: otherwise a 409 DomainError on `idempotency_key`,
    also when a concurrent request inserted the key first.
    """
    return message_send_many([SendRequest(
        patient=patient, purpose=purpose, template=template, context=context, idempotency_key=idempotency_key,
        channel=channel, not_before=not_before, urgent=urgent, actor=actor, request_fingerprint=request_fingerprint,
    )])[0]


_PURPOSES, _CHANNELS = frozenset(Purpose.values), frozenset(Channel.values)


def _validate(req: SendRequest) -> None:
    if req.purpose not in _PURPOSES:
        raise ValidationError({"purpose": _("Choose one of: %(v)s.") % {"v": ", ".join(Purpose.values)}})
    if req.channel is not None and req.channel not in _CHANNELS:
        raise ValidationError({"channel": _("Choose one of: %(v)s.") % {"v": ", ".join(Channel.values)}})
    if not req.idempotency_key or len(req.idempotency_key) > MAX_KEY:
        raise ValidationError({"idempotency_key": _("Give a key of 1 to %(n)s characters.") % {"n": MAX_KEY}})
    if not isinstance(req.context, dict):
        raise ValidationError({"context": _("Give an object of template values.")})
    if req.not_before is not None and timezone.is_naive(req.not_before):
        raise ValidationError({"not_before": _("Give a time with its time zone.")})
    if req.patient.is_merged:
        raise DomainError(_("This patient was merged into another record."), field="patient", status=409)


def conversations_for(patients: list[Patient]) -> dict[int, Conversation]:
    """The conversation of each patient, created where missing (one per patient, race-safe)."""
    found = {c.patient_id: c for c in Conversation.objects.filter(patient__in=patients)}
    missing = [p for p in patients if p.pk not in found]
    if missing:
        created = [Conversation(patient=p, site_id=p.home_site_id) for p in missing]
        try:
            with transaction.atomic():
                Conversation.objects.bulk_create(created)  # the ids come back: no second query
            found.update({c.patient_id: c for c in created})
        except IntegrityError:  # some were created concurrently: keep theirs
            Conversation.objects.bulk_create(
                [Conversation(patient=p, site_id=p.home_site_id) for p in missing], ignore_conflicts=True
            )
            found.update({c.patient_id: c for c in Conversation.objects.filter(patient__in=missing)})
    return found


def _attach_sites(patients: list[Patient]) -> None:
    """Routing reads each patient's home site (time zone, language): one query for the batch,
    unless the caller loaded them already."""
    todo = [p for p in patients if not Patient.home_site.is_cached(p)]
    if todo:
        sites = Site.objects.in_bulk({p.home_site_id for p in todo})
        for p in todo:
            p.home_site = sites[p.home_site_id]


def message_send_many(requests: list[SendRequest]) -> list[Message]:
    """`message_send` for a batch (a reminder sweep), with a fixed number of queries per batch."""
    for req in requests:
        _validate(req)
    keys = [r.idempotency_key for r in requests]
    if len(set(keys)) != len(keys):
        raise ValidationError({"idempotency_key": _("Each message in a batch needs its own key.")})
    existing = {m.idempotency_key: m for m in Message.objects.filter(idempotency_key__in=keys)}
    for req in requests:
        prior = existing.get(req.idempotency_key)
        if prior is not None:
            _check_key_reuse(prior, patient_id=req.patient.pk, fingerprint=req.request_fingerprint)
    todo = [r for r in requests if r.idempotency_key not in existing]
    now = timezone.now()
    created: dict[str, Message] = {}
    if todo:
        _attach_sites([r.patient for r in todo])
        patients = list({r.patient.pk: r.patient for r in todo}.values())
        conversations = conversations_for(patients)
        lookups = Lookups.load(patients, {r.template for r in todo})
        checks, index, candidates = [], {}, {}
        for req in todo:
            candidates[req.idempotency_key] = channels = candidate_channels(req.patient, req.channel)
            for channel in channels:
                index[(req.idempotency_key, channel)] = len(checks)
                checks.append((req.patient, channel, req.purpose))
        decisions = may_contact_many(checks, at=now)
        rows = []
        for req in todo:
            channels = candidates[req.idempotency_key]
            conv = conversations[req.patient.pk]
            send_at = max(now, req.not_before or now)
            chosen, skipped = route(
                patient=req.patient, purpose=req.purpose, template_name=req.template, context=req.context,
                channels=channels, decisions={c: decisions[index[(req.idempotency_key, c)]] for c in channels},
                lookups=lookups, window_open=_window_open(conv, send_at),
            )
            msg = Message(
                conversation=conv, patient=req.patient, direction=Direction.OUTBOUND, purpose=req.purpose,
                urgent=req.urgent, template=req.template, context=req.context,
                idempotency_key=req.idempotency_key, created_by=req.actor, routing=[*skipped],
                request_fingerprint=req.request_fingerprint,
            )
            if chosen is None:
                msg.status = MessageStatus.FAILED
                msg.error_code = "no_allowed_channel"
                msg.error_message = "; ".join(f"{s['channel']}: {s['skipped']}" for s in skipped) or "no channel"
                msg.failed_at = now
            else:
                if not req.urgent:
                    send_at = quiet_hours_end(req.patient, send_at)
                apply_route(msg, chosen)
                msg.status = MessageStatus.QUEUED
                msg.not_before = send_at if send_at > now else None
                msg.next_attempt_at = send_at
            rows.append(msg)
        try:
            with transaction.atomic():
                Message.objects.bulk_create(rows)
        except IntegrityError:
            # Another request queued one of these keys meanwhile: take theirs, add the rest.
            return _insert_one_by_one(rows, requests, existing)
        created = {m.idempotency_key: m for m in rows}
        if any(m.status == MessageStatus.QUEUED and m.next_attempt_at <= now for m in rows):
            from messaging.dispatch import kick

            transaction.on_commit(kick)
    return [existing.get(r.idempotency_key) or created[r.idempotency_key] for r in requests]


def _insert_one_by_one(rows: list[Message], requests: list[SendRequest], existing: dict[str, Message]) -> list[Message]:
    out: dict[str, Message] = dict(existing)  # keys queued before this batch stay theirs
    for msg in rows:
        try:
            with transaction.atomic():
                msg.save()
            out[msg.idempotency_key] = msg
        except IntegrityError:
            theirs = Message.objects.get(idempotency_key=msg.idempotency_key)
            _check_key_reuse(theirs, patient_id=msg.patient_id, fingerprint=msg.request_fingerprint)
            out[msg.idempotency_key] = theirs
    from messaging.dispatch import kick

    transaction.on_commit(kick)
    return [out[r.idempotency_key] for r in requests]


def _check_key_reuse(prior: Message, *, patient_id: int, fingerprint: str | None) -> None:
    """A key already queued must come back for the same patient and, when the caller fingerprints
    its requests, with the same fingerprint; otherwise a 409 on `idempotency_key`."""
    if prior.patient_id != patient_id:
        raise DomainError(_("This idempotency key was used for another patient."), field="idempotency_key",
                          status=409)
    if fingerprint is not None and prior.request_fingerprint != fingerprint:
        raise DomainError(_("This idempotency key was already used with a different request."),
                          field="idempotency_key", status=409, code="idempotency_conflict")


def apply_route(msg: Message, chosen) -> None:
    msg.channel = chosen.channel
    msg.to_address = chosen.address
    msg.account = chosen.account
    msg.from_address = chosen.account.sender
    msg.provider = chosen.account.provider
    msg.language = chosen.template.language
    msg.subject = chosen.subject
    msg.body = chosen.body
    msg.content_sid = chosen.content_sid
    msg.content_variables = chosen.content_variables
    msg.routing = [*msg.routing, {"channel": chosen.channel, "chosen": True}]


def _window_open(conv: Conversation, at: dt.datetime) -> bool:
    return conv.whatsapp_window_ends_at is not None and conv.whatsapp_window_ends_at > at


# --- status callbacks -------------------------------------------------------------------------

_TIME_FIELD = {
    MessageStatus.SENT: "sent_at", MessageStatus.DELIVERED: "delivered_at", MessageStatus.READ: "read_at",
    MessageStatus.FAILED: "failed_at", MessageStatus.UNDELIVERED: "failed_at",
}


def message_status_advance(*, message_id: int, status: str, error_code: str = "", at: dt.datetime | None = None) -> bool:
    """Move a message forward to `status`; never backwards (delivered never returns to sent).

    One conditional UPDATE, so repeated and out-of-order callbacks are harmless. Returns whether
    the status changed.
    """
    from messaging.models import STATUS_RANK

    if status not in STATUS_RANK or status in (MessageStatus.RECEIVED, MessageStatus.QUEUED):
        return False
    lower = [s for s, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]]
    at = at or timezone.now()
    fields = {"status": status, _TIME_FIELD.get(status, "sent_at"): at}
    if error_code:
        fields["error_code"] = error_code[:40]
    if status in (MessageStatus.DELIVERED, MessageStatus.READ):
        # A receipt may be the first news we get: it was sent by then at the latest.
        fields["sent_at"] = Coalesce(F("sent_at"), Value(at))
    return bool(Message.objects.filter(pk=message_id, status__in=lower).update(**fields))


# --- staff actions on conversations -----------------------------------------------------------


def conversation_reply(*, conversation: Conversation, text: str, actor: User, idempotency_key: str,
                       channel: str | None = None) -> Message:
    """A staff reply: free text through the same pipeline (consent, quiet hours, 24-hour rule).

    Goes out on `channel`, else where the patient last wrote, else by preference.
    """
    from messaging.selectors import last_inbound_channel

    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": _("Write a reply.")})
    if len(text) > 1600:
        raise ValidationError({"text": _("Keep replies under 1600 characters.")})
    if conversation.patient is None:
        raise DomainError(_("Link this conversation to a patient before replying."), field="patient", status=409)
    message = message_send(
        patient=conversation.patient, purpose=Purpose.CARE, template="free_text", context={"text": text},
        idempotency_key=idempotency_key, channel=channel or last_inbound_channel(conversation), actor=actor,
    )
    Conversation.objects.filter(pk=conversation.pk).update(needs_attention=False, last_message_at=timezone.now())
    return message


def conversation_mark_handled(*, conversation: Conversation) -> None:
    Conversation.objects.filter(pk=conversation.pk).update(needs_attention=False)


@transaction.atomic
def conversation_link_patient(*, conversation: Conversation, patient: Patient) -> Conversation:
    """Attribute an unidentified (or shared-phone) conversation to `patient`: its messages join
    the patient's own conversation."""
    if conversation.patient_id is not None:
        raise DomainError(_("This conversation already belongs to a patient."), field="patient", status=409)
    if patient.home_site.organization_id != conversation.site.organization_id:
        raise ValidationError({"patient": _("Choose a patient of this organisation.")})
    target = conversations_for([patient])[patient.pk]
    Message.objects.filter(conversation=conversation).update(conversation=target, patient=patient)
    fields = {"needs_attention": True}
    for name in ("last_message_at", "last_inbound_at", "whatsapp_window_ends_at"):
        mine, theirs = getattr(conversation, name), getattr(target, name)
        if mine and (theirs is None or mine > theirs):
            fields[name] = mine
    Conversation.objects.filter(pk=target.pk).update(**fields)
    conversation.candidate_patients.clear()
    Conversation.objects.filter(pk=conversation.pk).update(needs_attention=False)
    return target
