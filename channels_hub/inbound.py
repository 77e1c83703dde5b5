"""Turning stored webhook events into provider-neutral inbound messages and status updates.

channels_hub owns the transport; messaging registers the handlers (set_handlers) that act on them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from channels_hub.models import InboundEvent, InboundKind
from channels_hub.providers.twilio import STATUS_MAP

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class InboundMessage:
    provider: str
    channel: str
    external_id: str
    from_address: str
    to_address: str
    body: str
    received_at: dt.datetime
    profile_name: str = ""
    num_media: int = 0
    messaging_service_sid: str = ""  # Twilio: the service the number belongs to (accounts may have no number)


@dataclass(frozen=True)
class StatusUpdate:
    provider: str
    external_id: str
    status: str
    error_code: str = ""
    reference: str = ""


_handlers: dict[str, Callable] = {}


def set_handlers(*, message: Callable[[InboundMessage], None], status: Callable[[StatusUpdate], None]) -> None:
    _handlers["message"] = message
    _handlers["status"] = status


def _strip(address: str) -> tuple[str, str]:
    """('whatsapp', '+39…') for 'whatsapp:+39…', ('sms', '+39…') otherwise."""
    if address.startswith("whatsapp:"):
        return "whatsapp", address[len("whatsapp:"):]
    return "sms", address


def parse(event: InboundEvent) -> InboundMessage | StatusUpdate:
    p = event.payload
    if event.provider == "sandbox":
        if event.kind == InboundKind.STATUS:
            return StatusUpdate("sandbox", event.external_id, p["status"], p.get("error_code", ""), p.get("reference", ""))
        return InboundMessage("sandbox", p["channel"], event.external_id, p["from"], p["to"], p.get("body", ""),
                              event.received_at)
    if event.kind == InboundKind.STATUS:
        raw = (p.get("MessageStatus") or p.get("SmsStatus") or "").lower()
        return StatusUpdate("twilio", event.external_id, STATUS_MAP.get(raw, raw), p.get("ErrorCode", "") or "",
                            p.get("_ref", ""))
    channel, sender = _strip(p.get("From", ""))
    _c, recipient = _strip(p.get("To", ""))
    try:
        media = int(p.get("NumMedia") or 0)
    except ValueError:
        media = 0
    return InboundMessage("twilio", channel, event.external_id, sender, recipient, p.get("Body", ""), event.received_at,
                          p.get("ProfileName", ""), media, p.get("MessagingServiceSid", "") or "")


def inbound_event_store(*, provider: str, kind: str, external_id: str, status: str, payload: dict) -> InboundEvent | None:
    """Store a webhook before anything else; None when it is a retry of one already stored.

    Processing is queued after commit, so the webhook answers fast.
    """
    try:
        with transaction.atomic():
            event = InboundEvent.objects.create(provider=provider, kind=kind, external_id=external_id[:64],
                                                status=status[:20], payload=payload)
    except IntegrityError:
        return None
    transaction.on_commit(lambda: inbound_event_enqueue(event.pk))
    return event


def inbound_event_enqueue(event_id: int) -> None:
    """Queue the processing task. With the broker down the event waits, stored, for the relay:
    the webhook still answers 200 (Twilio would otherwise retry a request we have kept)."""
    from channels_hub.tasks import process_inbound_event

    try:
        process_inbound_event.delay(event_id)
    except Exception:
        log.warning("could not queue inbound event %s; the relay will", event_id, exc_info=True)


RETRY_BASE_SECONDS = 5
RETRY_MAX_SECONDS = 3600


def inbound_event_process(event_id: int) -> None:
    """Hand one stored event to its handler, once. Safe to call twice (a locked, conditional claim)."""
    try:
        with transaction.atomic():
            event = InboundEvent.objects.select_for_update().filter(pk=event_id, processed_at__isnull=True).first()
            if event is None:
                return
            parsed = parse(event)
            _handlers["status" if isinstance(parsed, StatusUpdate) else "message"](parsed)
            InboundEvent.objects.filter(pk=event_id).update(processed_at=timezone.now(), error="")
    except Exception as exc:
        # Kept, with the error for staff (admin), and tried again by the relay with a growing pause
        # (capped, never given up: a STOP must take effect however long the fault lasts).
        log.exception("inbound event %s failed", event_id)
        failures = (InboundEvent.objects.filter(pk=event_id).values_list("failures", flat=True).first() or 0) + 1
        pause = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** min(failures - 1, 20))
        InboundEvent.objects.filter(pk=event_id).update(
            error=f"{type(exc).__name__}: {exc}"[:2000], failures=failures,
            retry_at=timezone.now() + dt.timedelta(seconds=pause))


def inbound_pending(older_than: dt.timedelta, limit: int = 500) -> list[int]:
    """Unprocessed events to queue again: those whose task was lost (broker restart) and those
    whose handler failed and whose pause is over."""
    now = timezone.now()
    return list(
        InboundEvent.objects.filter(processed_at__isnull=True)
        .filter(Q(error="", received_at__lt=now - older_than) | Q(failures__gt=0, retry_at__lte=now))
        .order_by("received_at").values_list("id", flat=True)[:limit]
    )


def sandbox_reply(*, channel: str, from_address: str, to_address: str, body: str) -> InboundEvent | None:
    """A reply typed in the console's patient-device view: it enters the same inbound path."""
    import uuid

    return inbound_event_store(
        provider="sandbox", kind=InboundKind.MESSAGE, external_id="SBIN" + uuid.uuid4().hex, status="received",
        payload={"channel": channel, "from": from_address, "to": to_address, "body": body},
    )
