"""Twilio SMS and WhatsApp through the official `twilio` library.

The API base URL is a setting (TWILIO_API_BASE_URL) so tests point the real client at a local fake.
Twilio has no idempotency key on message create: a timeout after the request went out is reported
as unknown, and `lookup` finds the message by recipient, time and body before anyone resends it.
"""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioRestException

from channels_hub.credentials import twilio_credentials
from channels_hub.providers import register
from channels_hub.providers.base import Outbound, Provider, SendResult, TransportError
from channels_hub.providers.twilio_http import make_twilio_client

# Twilio error codes that will not change on retry, and what they mean to us.
PERMANENT_CODES = {
    21610: "unsubscribed",  # the recipient replied STOP to this sender
    21211: "invalid_number",
    21614: "not_mobile",
    21612: "unreachable_route",
    21408: "region_not_enabled",
    63016: "outside_session_window",  # WhatsApp free text outside the 24-hour window
    63024: "invalid_recipient",
}
TRANSIENT_CODES = {20429, 20500, 20503, 30001}
STATUS_MAP = {
    "accepted": "queued", "scheduled": "queued", "queued": "queued", "sending": "sent", "sent": "sent",
    "delivered": "delivered", "read": "read", "undelivered": "undelivered", "failed": "failed",
    "canceled": "failed", "receiving": "received", "received": "received",
}


def _address(channel: str, value: str) -> str:
    return f"whatsapp:{value}" if channel == "whatsapp" and value and not value.startswith("whatsapp:") else value


class _TwilioBase(Provider):
    kind = "twilio"
    can_lookup = True
    max_body_length = 1600

    def __init__(self, account):
        super().__init__(account)
        creds = twilio_credentials(account.credentials_env)
        self.client = make_twilio_client(
            account_sid=creds.account_sid, auth_token=creds.auth_token, base_url=settings.TWILIO_API_BASE_URL,
            timeout=settings.TWILIO_TIMEOUT,
        )

    @property
    def request_timeout(self) -> float:
        return settings.TWILIO_TIMEOUT

    def _create_kwargs(self, o: Outbound) -> dict:
        kwargs: dict = {"to": _address(self.channel, o.to)}
        if self.account.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.account.messaging_service_sid
        else:
            kwargs["from_"] = _address(self.channel, o.sender or self.account.sender)
        if o.content_sid:
            kwargs["content_sid"] = o.content_sid
            if o.content_variables:
                kwargs["content_variables"] = json.dumps(o.content_variables, ensure_ascii=False)
        else:
            kwargs["body"] = o.body
        if o.status_callback:
            kwargs["status_callback"] = o.status_callback
        return kwargs

    def send(self, outbound: Outbound) -> SendResult:
        try:
            msg = self.client.messages.create(**self._create_kwargs(outbound))
        except TwilioRestException as exc:
            raise _map_rest_error(exc) from exc
        except (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError) as exc:
            raise TransportError(f"could not connect: {exc}", permanent=False, code="connect") from exc
        except requests.exceptions.ConnectionError as exc:
            if _never_connected(exc):
                raise TransportError(f"could not connect: {exc}", permanent=False, code="connect") from exc
            raise TransportError(f"connection lost after sending: {exc}", permanent=False, unknown=True,
                                 code="connection_lost") from exc
        except requests.exceptions.Timeout as exc:
            raise TransportError(f"no answer in time: {exc}", permanent=False, unknown=True, code="timeout") from exc
        return SendResult(provider_id=msg.sid, status=STATUS_MAP.get(str(msg.status), "sent"))

    def send_many(self, outbounds):
        # Each create is one HTTP round trip; a few in parallel keep a worker busy, not waiting.
        if len(outbounds) <= 1:
            return super().send_many(outbounds)

        def one(o):
            try:
                return self.send(o)
            except TransportError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=settings.TWILIO_PARALLEL_REQUESTS) as pool:
            return list(pool.map(one, outbounds))

    def lookup(self, outbound: Outbound, *, since: dt.datetime, exclude: frozenset[str] = frozenset()
               ) -> SendResult | None:
        # No DateSent filter: a message Twilio accepted but has not sent yet (queued behind a
        # Messaging Service's rate limit) has no DateSent, and must be found all the same. The
        # newest messages to the recipient come first; the creation time is checked here.
        try:
            found = self.client.messages.list(to=_address(self.channel, outbound.to), limit=50)
        except TwilioRestException as exc:
            raise _map_rest_error(exc) from exc
        except requests.exceptions.RequestException as exc:
            raise TransportError(f"lookup failed: {exc}", permanent=False, code="lookup") from exc
        # Oldest first: of two lost sends to one number, the earlier attempt takes the earlier message.
        for msg in sorted(found, key=lambda m: m.date_created or since):
            if msg.sid in exclude:
                continue  # another of our messages to this recipient (e.g. a second template send)
            created = msg.date_created
            if created is not None and created < since - dt.timedelta(seconds=5):
                continue
            same = (msg.body or "") == outbound.body if not outbound.content_sid else True
            if same:
                return SendResult(provider_id=msg.sid, status=STATUS_MAP.get(str(msg.status), "sent"),
                                  error_code=str(msg.error_code or ""))
        return None


def _never_connected(exc: Exception) -> bool:
    text = repr(exc)
    return "NewConnectionError" in text or "Connection refused" in text or "Failed to establish" in text


def _map_rest_error(exc: TwilioRestException) -> TransportError:
    code = exc.code or 0
    status = exc.status or 0
    message = exc.msg or str(exc)
    if status == 429 or status >= 500 or code in TRANSIENT_CODES:
        return TransportError(message, permanent=False, code=str(code or status))
    if status in (401, 403):
        # Our credentials are wrong: every message would fail the same way; keep it retrying so a
        # fixed configuration delivers them, and say so loudly in the attempt log.
        return TransportError(message, permanent=False, code=str(code or status))
    return TransportError(message, permanent=True, code=str(code or status))


@register
class TwilioSmsProvider(_TwilioBase):
    channel = "sms"


@register
class TwilioWhatsAppProvider(_TwilioBase):
    channel = "whatsapp"
    session_window_hours = 24
    supports_templates = True
