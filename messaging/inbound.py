"""What happens to a patient's reply: identify them, handle keywords, offer it to the open flow,
else to the FAQ/triage handlers, else to the staff inbox. Registered with channels_hub in ready()."""

from __future__ import annotations

import datetime as dt
import logging

from django.db import IntegrityError, transaction
from django.db.models import Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from channels_hub.inbound import InboundMessage, StatusUpdate
from channels_hub.keywords import Keyword, classify
from channels_hub.models import ChannelAccount
from consent.models import ConsentSource, Purpose
from consent.policy import may_contact_many
from consent.services import consent_grant, consent_revoke_channel
from messaging.consequences import apply_consequences
from messaging.hooks import fallback_handlers, flow_handler
from messaging.models import Conversation, Direction, Message, MessageStatus
from messaging.routing import CONTACT_KIND
from messaging.services import conversations_for, message_status_advance
from patients.models import Channel, ContactKind, ContactPoint, Patient

log = logging.getLogger(__name__)
WHATSAPP_WINDOW = dt.timedelta(hours=24)
KEYWORD_TEMPLATES = {Keyword.OPT_OUT: "keyword_stop", Keyword.OPT_IN: "keyword_start", Keyword.HELP: "keyword_help"}


def _account_for(msg: InboundMessage) -> ChannelAccount | None:
    """The account written to: by its number, else by its Messaging Service (an account may have
    only a service SID: Twilio then picks the number), else any sandbox account of the channel."""
    accounts = ChannelAccount.objects.filter(channel=msg.channel, is_active=True, provider=msg.provider) \
        .select_related("site").order_by("id")
    found = accounts.filter(sender=msg.to_address).first()
    if found is None and msg.messaging_service_sid:
        found = accounts.filter(messaging_service_sid=msg.messaging_service_sid).first()
    if found is None and msg.provider == "sandbox":
        found = accounts.first()
    return found


def match_patients(address: str, channel: str, organization_id: int) -> list[Patient]:
    """Patients whose valid contact point for `channel` is `address` (a shared phone gives several)."""
    kinds = [ContactKind.WHATSAPP, ContactKind.PHONE] if channel == Channel.WHATSAPP else [CONTACT_KIND[channel]]
    ids = ContactPoint.objects.filter(kind__in=kinds, value=address).values("patient_id")
    return list(
        Patient.objects.filter(pk__in=ids, organization_id=organization_id, merged_into__isnull=True)
        .select_related("home_site").order_by("pk")
    )


def _unidentified_conversation(site_id: int, address: str) -> Conversation:
    try:
        with transaction.atomic():
            conv, _ = Conversation.objects.get_or_create(site_id=site_id, address=address, patient=None)
    except IntegrityError:
        conv = Conversation.objects.get(site_id=site_id, address=address, patient=None)
    return conv


def handle_inbound_message(msg: InboundMessage) -> Message | None:
    if Message.objects.filter(provider=msg.provider, provider_id=msg.external_id).exists():
        return None  # already handled
    account = _account_for(msg)
    if account is None:
        raise LookupError(f"no active {msg.provider} {msg.channel} account for {msg.to_address}")
    patients = match_patients(msg.from_address, msg.channel, account.site.organization_id)
    patient = patients[0] if len(patients) == 1 else None
    if patient is not None:
        conv = conversations_for([patient])[patient.pk]
    else:
        conv = _unidentified_conversation(account.site_id, msg.from_address)
        if patients:
            conv.candidate_patients.add(*patients)
    at = msg.received_at
    message = Message.objects.create(
        conversation=conv, patient=patient, direction=Direction.INBOUND, channel=msg.channel, body=msg.body[:5000],
        from_address=msg.from_address, to_address=msg.to_address, account=account, provider=msg.provider,
        provider_id=msg.external_id, status=MessageStatus.RECEIVED, received_at=at,
    )
    updates = {"last_message_at": at, "last_inbound_at": at}
    if msg.channel == Channel.WHATSAPP:
        updates["whatsapp_window_ends_at"] = at + WHATSAPP_WINDOW
    # Events may be processed out of order (a retried task): these times only ever move forward.
    Conversation.objects.filter(pk=conv.pk).update(**{
        name: Greatest(Coalesce(name, Value(value)), Value(value)) for name, value in updates.items()
    })
    conv.refresh_from_db(fields=list(updates))

    keyword = classify(msg.body)
    if keyword is not None and _handle_keyword(keyword, msg, patients, conv, account):
        return message
    if conv.flow and (conv.flow_expires_at is None or conv.flow_expires_at > timezone.now()):
        handler = flow_handler(conv.flow)
        if handler is not None and handler(conv, message):
            return message
    for handler in fallback_handlers():
        if handler(conv, message):
            return message
    Conversation.objects.filter(pk=conv.pk).update(needs_attention=True)
    return message


def _handle_keyword(keyword: Keyword, msg: InboundMessage, patients: list[Patient], conv, account) -> bool:
    """Opt-out, opt-in and help keywords. Returns True when the message was fully handled."""
    if keyword == Keyword.OPT_OUT:
        for patient in patients:
            consent_revoke_channel(patient=patient, channel=msg.channel, source=ConsentSource.KEYWORD,
                                   note=f"{msg.body.strip()[:40]} ({msg.external_id})")
        _compliance_reply(keyword, msg, conv, account, patients)
        return True
    if keyword == Keyword.OPT_IN:
        revoked = [
            p for p, decision in zip(
                patients, may_contact_many([(p, msg.channel, Purpose.CARE) for p in patients]), strict=True
            ) if decision.reason == "revoked"
        ]
        if not revoked:
            return False  # "YES" from someone subscribed is an answer for the open flow
        for patient in revoked:
            consent_grant(patient=patient, channel=msg.channel, purpose=Purpose.CARE, source=ConsentSource.KEYWORD,
                          note=f"{msg.body.strip()[:40]} ({msg.external_id})")
        _compliance_reply(keyword, msg, conv, account, revoked)
        return True
    _compliance_reply(keyword, msg, conv, account, patients)
    return True


def _compliance_reply(keyword: Keyword, msg: InboundMessage, conv, account, patients: list[Patient]) -> None:
    """The confirmation of STOP/START/HELP: the one message that goes out regardless of consent."""
    from messaging.dispatch import kick
    from messaging.models import MessageTemplate
    from messaging.rendering import render

    site = account.site
    languages = [p.language for p in patients[:1]] + [site.language, "en"]
    name = KEYWORD_TEMPLATES[keyword]
    variants = {t.language: t for t in MessageTemplate.objects.filter(name=name, is_active=True)
                .filter(channel__in=[msg.channel, ""]).order_by("channel")}
    template = next((variants[lang] for lang in languages if lang in variants), None)
    if template is None:
        log.warning("no %s template: keyword %s handled without a confirmation", name, keyword)
        return
    context = {"site_name": site.name, "site_phone": site.phone or site.email, "clinic_name": site.organization.name}
    now = timezone.now()
    Message.objects.create(
        conversation=conv, patient=patients[0] if len(patients) == 1 else None, direction=Direction.OUTBOUND,
        channel=msg.channel, purpose=Purpose.CARE, compliance=True, urgent=True, template=name,
        language=template.language, body=render(template.body, context), to_address=msg.from_address,
        from_address=account.sender, account=account, provider=account.provider, status=MessageStatus.QUEUED,
        idempotency_key=f"keyword:{msg.provider}:{msg.external_id}", next_attempt_at=now,
        routing=[{"channel": msg.channel, "chosen": True, "keyword": str(keyword)}],
    )
    transaction.on_commit(kick)


def handle_status_update(update: StatusUpdate) -> None:
    """Apply a delivery receipt. A receipt counts only for the send the message is waiting on: one
    for the SID of an earlier attempt (failed, or replaced by a fallback or a template resend) is
    ignored, so it can never mark the current send as done."""
    from messaging.dispatch import fallback_after_delivery_failure, resend_as_template
    from messaging.models import MessageAttempt

    message = Message.objects.filter(provider=update.provider, provider_id=update.external_id).first()
    if message is None and update.reference.isdigit():
        candidate = Message.objects.filter(pk=int(update.reference), provider=update.provider).first()
        # The send in flight has not recorded its id on its attempt yet (or the message would have
        # been found by it above), so an attempt that holds this id is an earlier send's, whatever
        # its outcome: e.g. the WhatsApp send a fallback to SMS replaced.
        stale = candidate is not None and MessageAttempt.objects.filter(
            message=candidate, provider_id=update.external_id).exists()
        # The receipt may beat the worker's own record of the provider id: adopt it while that send
        # is still in flight, never for a message that was re-queued meanwhile.
        if (candidate is not None and not stale and candidate.status in (MessageStatus.SENDING, MessageStatus.UNKNOWN)
                and Message.objects.filter(pk=candidate.pk, provider_id__isnull=True)
                .update(provider_id=update.external_id)):
            message = candidate
    if message is None:
        log.warning("status %s for unknown or superseded message %s", update.status, update.external_id)
        return
    failed = update.status in (MessageStatus.FAILED, MessageStatus.UNDELIVERED)
    if failed and update.error_code == "63016" and resend_as_template(message, provider_id=update.external_id):
        # WhatsApp reports a closed window after accepting the free text: the template goes instead.
        return
    moved = message_status_advance(message_id=message.pk, status=update.status, error_code=update.error_code)
    if failed and moved:
        if update.error_code:
            apply_consequences(message, update.error_code)
        fallback_after_delivery_failure(message, error_code=update.error_code)
