"""The one provider interface. Each provider is one module; the registry maps (provider, channel) to it.

A provider turns an `Outbound` into a `SendResult`, or raises `TransportError`:
- permanent=True: the provider refused this message for good (unsubscribed, invalid number…);
- permanent=False: try again later (429, 5xx, connection refused);
- unknown=True: the request may have reached the provider (timeout after sending). The message
  must not be sent again blindly; `lookup` asks the provider what happened.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass
class Outbound:
    channel: str
    to: str
    sender: str = ""
    body: str = ""
    subject: str = ""
    html: str = ""
    content_sid: str = ""
    content_variables: dict[str, str] = field(default_factory=dict)
    status_callback: str = ""
    messaging_service_sid: str = ""
    reference: str = ""  # our message id; lets lookups and the device view find it
    attachments: list[tuple[str, bytes, str]] = field(default_factory=list)  # (filename, content, mimetype)


@dataclass(frozen=True)
class SendResult:
    provider_id: str
    status: str = "sent"  # a messaging.MessageStatus value
    error_code: str = ""  # the provider's code when a message it holds has failed (found by lookup)


class TransportError(Exception):
    def __init__(self, message: str, *, permanent: bool, code: str = "", unknown: bool = False,
                 retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.code = str(code or "")
        self.unknown = unknown
        self.retry_after = retry_after


class Provider:
    """Base class. Subclasses set the capability flags and implement `send`."""

    kind: str = ""
    channel: str = ""
    session_window_hours: int | None = None  # WhatsApp: free text only within 24 h of the last inbound
    supports_templates: bool = False  # can send an approved template (ContentSid) outside the window
    max_body_length: int = 1600
    can_lookup: bool = False  # can tell, after an unknown outcome, whether the message exists
    request_timeout: float = 0.0  # seconds one request may wait to connect, and again for the answer

    def __init__(self, account):
        self.account = account

    def send(self, outbound: Outbound) -> SendResult:
        raise NotImplementedError

    def send_many(self, outbounds: list[Outbound]) -> list[SendResult | TransportError]:
        """Send a batch; one result or error per message, in order. Override to go faster."""
        results: list[SendResult | TransportError] = []
        for outbound in outbounds:
            try:
                results.append(self.send(outbound))
            except TransportError as exc:
                results.append(exc)
        return results

    def lookup(self, outbound: Outbound, *, since: dt.datetime, exclude: frozenset[str] = frozenset()
               ) -> SendResult | None:
        """What the provider holds for this message sent after `since`, or None if nothing.

        `exclude`: provider ids already known to belong to other messages (never this one's).
        Raises TransportError if the provider cannot be asked right now.
        """
        raise TransportError("this provider cannot look messages up", permanent=True, code="no_lookup")
