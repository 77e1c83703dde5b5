"""A local fake of Twilio's Messages API, honest enough to point the real `twilio` client at.

What it is:
- a real HTTP server (stdlib `ThreadingHTTPServer` in a background thread, or its own process:
  `python -m tests.fakes.twilio_server --port 8765`) speaking the 2010-04-01 Messages API:
  create (POST Messages.json), list (GET Messages.json), fetch / update / delete (Messages/{Sid}.json);
- HTTP Basic auth with AccountSid:AuthToken (anything else: 401, code 20003);
- every form body and query string validated against Twilio's own OpenAPI description
  (`fixtures/twilio_messages_openapi.json`, extracted from twilio-oai): unknown field, wrong type,
  enum, pattern, or format -> 400 with a Twilio-style error body;
- Twilio's documented required-field rules on create: no To -> 21604, neither From nor
  MessagingServiceSid -> 21603, none of Body / MediaUrl / ContentSid -> 21602;
- responses built from the documented `api.v2010.account.message` shape (sid SM/MM + 32 hex,
  status queued, RFC 2822 dates, num_segments, price null, uri, subresource_uris);
- scripted misbehaviour per destination number or globally (`script(...)`): a Twilio error
  (21610 unsubscribed, 21211 invalid number, 21614 not mobile, 63016 outside the WhatsApp window,
  20429 too many requests, 20500/20503 server errors, or any status+code), a delay before the
  response (the message is created first, so a client timeout leaves a message a later fetch or
  list finds), or a connection closed without any response (before or after creating it);
- status callbacks on demand (`send_status_callback`), form-encoded like Twilio's and signed with
  X-Twilio-Signature exactly as `twilio.request_validator.RequestValidator` checks it;
- helpers to build signed inbound-message webhooks and to load the payload fixture files in
  tests/fixtures/twilio/.

Where it is stricter than Twilio, on purpose: Twilio silently ignores unknown parameters; the fake
rejects them (400, code 20001) so a typo in our request code cannot pass unnoticed.

Twilio's spec documents no error responses and no callbacks. Error bodies follow Twilio's
documentation: {"code": 21610, "message": "...", "more_info": "https://www.twilio.com/docs/errors/21610",
"status": 400}. The control API under /_fake/ (no auth, JSON) lets another process script the fake and
read what it received; see `FakeTwilioControl`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import email.utils
import hmac
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from twilio.request_validator import RequestValidator

HERE = Path(__file__).resolve().parent
SPEC_PATH = HERE / "fixtures" / "twilio_messages_openapi.json"
WEBHOOK_FIXTURES = HERE.parent / "fixtures" / "twilio"

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "f4ce" * 8
DEFAULT_AUTH_TOKEN = "7e57" * 8
# The number a Messaging Service "picks" when a message is sent with MessagingServiceSid and no From.
DEFAULT_SERVICE_SENDER = "+15017122661"
LIST_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
INSTANCE_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json"

_LIST_RE = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")
_INSTANCE_RE = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages/(?P<sid>[^/]+)\.json$")

# Twilio error codes the fake uses or that tests script: code -> (HTTP status, message).
# Messages follow Twilio's error dictionary (https://www.twilio.com/docs/api/errors/<code>).
ERRORS: dict[int, tuple[int, str]] = {
    20001: (400, "Invalid parameter"),
    20003: (401, "Authenticate"),
    20004: (405, "Method not allowed"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "An internal server error has occurred"),
    20503: (503, "Service is unavailable. Please try again"),
    21211: (400, "Invalid 'To' Phone Number"),
    21212: (400, "Invalid 'From' Number"),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' or 'MessagingServiceSid' parameter is required to send a message."),
    21604: (400, "A 'To' phone number is required."),
    21608: (400, "The number is unverified. Trial accounts may only send messages to verified numbers."),
    21609: (400, "Invalid 'StatusCallback'"),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21612: (400, "The 'To' phone number is not currently reachable via SMS"),
    21614: (400, "'To' number is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    21656: (400, "The ContentVariables Parameter is invalid."),
    21910: (400, "Invalid From and To pair. From and To should be of the same channel."),
    63016: (400, "Failed to send freeform message because you are outside the allowed window. "
                 "If you are using WhatsApp, please use a Message Template."),
}
# Field -> the code Twilio uses when that field's value is malformed.
_FIELD_CODES = {"To": 21211, "From": 21212, "FallbackFrom": 21212, "StatusCallback": 21609}
# Error codes carried by failed/undelivered status callbacks (for error_message on the resource).
DELIVERY_ERRORS = {
    30001: "Queue overflow", 30002: "Account suspended", 30003: "Unreachable destination handset",
    30004: "Message blocked", 30005: "Unknown destination handset", 30006: "Landline or unreachable carrier",
    30007: "Message filtered", 30008: "Unknown error", 63016: ERRORS[63016][1],
}

_E164 = r"\+[1-9]\d{6,14}"
_TO_RE = re.compile(rf"^(?:[a-z]+:)?{_E164}$")
_FROM_RE = re.compile(rf"^(?:(?:[a-z]+:)?{_E164}|\d{{3,8}}|(?=[A-Za-z0-9 ]*[A-Za-z])[A-Za-z0-9 ]{{1,11}})$")

_GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€\f")


def twilio_error_body(code: int, message: str | None = None, status: int | None = None) -> dict:
    """The JSON body Twilio returns with an error."""
    default_status, default_message = ERRORS.get(code, (status or 400, "Error"))
    return {"code": code, "message": message or default_message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status or default_status}


def rfc2822(moment: datetime | None) -> str | None:
    return email.utils.format_datetime(moment.astimezone(UTC)) if moment else None


def segments(body: str) -> int:
    """SMS segments for `body`: GSM-7 (160, then 153 per part) or UCS-2 (70, then 67 per part)."""
    if not body:
        return 1
    if all(ch in _GSM7_BASIC or ch in _GSM7_EXTENDED for ch in body):
        septets = len(body) + sum(ch in _GSM7_EXTENDED for ch in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


# --- the spec ---------------------------------------------------------------------------------

class MessagesSpec:
    """The request/response schemas of the Messages operations, from the OpenAPI fixture."""

    def __init__(self, path: Path = SPEC_PATH):
        self.doc = json.loads(path.read_text(encoding="utf-8"))
        self.schemas = self.doc["components"]["schemas"]
        list_ops = self.doc["paths"][LIST_PATH]
        instance_ops = self.doc["paths"][INSTANCE_PATH]
        form = "application/x-www-form-urlencoded"
        self.create_schema = list_ops["post"]["requestBody"]["content"][form]["schema"]
        self.update_schema = instance_ops["post"]["requestBody"]["content"][form]["schema"]
        self.list_params = {p["name"]: p["schema"] for p in list_ops["get"]["parameters"] if p["in"] == "query"}
        self.path_params = {p["name"]: p["schema"] for p in instance_ops["get"]["parameters"]}
        self.message_schema = self.schemas["api.v2010.account.message"]
        self.statuses = tuple(self.resolve({"$ref": "#/components/schemas/message_enum_status"})["enum"])

    def resolve(self, schema: dict) -> dict:
        ref = schema.get("$ref")
        return self.resolve(self.schemas[ref.rsplit("/", 1)[1]]) if ref else schema

    def property_schema(self, body_schema: dict, name: str) -> dict | None:
        prop = body_schema.get("properties", {}).get(name)
        return self.resolve(prop) if prop is not None else None

    def is_array(self, body_schema: dict, name: str) -> bool:
        prop = self.property_schema(body_schema, name)
        return bool(prop and prop.get("type") == "array")

    def check_value(self, schema: dict, value: str) -> str | None:
        """None if `value` (a form string) fits `schema`, else why not."""
        schema = self.resolve(schema)
        kind = schema.get("type", "string")
        if "enum" in schema and value not in schema["enum"]:
            return f"must be one of {', '.join(schema['enum'])}"
        if kind == "integer":
            if not re.fullmatch(r"-?\d+", value):
                return "must be an integer"
            number = int(value)
            if "minimum" in schema and number < schema["minimum"]:
                return f"must be at least {schema['minimum']}"
            if "maximum" in schema and number > schema["maximum"]:
                return f"must be at most {schema['maximum']}"
            return None
        if kind == "number":
            try:
                ok = math.isfinite(float(value))
            except ValueError:
                ok = False
            return None if ok else "must be a number"
        if kind == "boolean":
            return None if value.lower() in ("true", "false") else "must be true or false"
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"must be at least {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"must be at most {schema['maxLength']} characters"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"must match {schema['pattern']}"
        if schema.get("x-twilio", {}).get("ignoreFormat"):
            return None
        fmt = schema.get("format")
        if fmt == "uri":
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname or "_" in parts.hostname:
                return "must be an absolute http(s) URL with a valid hostname"
        elif fmt == "date-time" and _parse_when(value) is None:
            return "must be an ISO 8601 date-time"
        return None

    def validate_form(self, body_schema: dict, fields: dict[str, list[str]]) -> tuple[int, str] | None:
        """Unknown field, repeated scalar, or a value that does not fit: (code, message); else None."""
        properties = body_schema.get("properties", {})
        for name in fields:
            if name not in properties:
                return 20001, f"Unknown parameter: {name}"
        for name, values in fields.items():
            prop = self.resolve(properties[name])
            if prop.get("type") == "array":
                item_schema = prop.get("items", {})
                for value in values:
                    reason = self.check_value(item_schema, value)
                    if reason:
                        return _FIELD_CODES.get(name, 20001), f"Invalid parameter {name}: {value!r} {reason}"
                continue
            if len(values) > 1:
                return 20001, f"Invalid parameter {name}: given {len(values)} times"
            reason = self.check_value(prop, values[0])
            if reason:
                return _FIELD_CODES.get(name, 20001), f"Invalid parameter {name}: {values[0]!r} {reason}"
        return None


def _parse_when(value: str) -> datetime | date | None:
    """A date (YYYY-MM-DD) or an ISO 8601 date-time (aware, UTC if it says nothing)."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return date.fromisoformat(value)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- state -------------------------------------------------------------------------------------

@dataclass
class FakeMessage:
    sid: str
    account_sid: str
    to: str
    from_: str | None
    body: str
    messaging_service_sid: str | None
    status: str
    num_segments: int
    media_urls: list[str]
    status_callback: str | None
    date_created: datetime
    date_updated: datetime
    date_sent: datetime | None
    form: dict[str, Any]
    error_code: int | None = None
    error_message: str | None = None
    price: str | None = None
    price_unit: str | None = None
    deleted: bool = False

    def resource(self) -> dict:
        """The `api.v2010.account.message` JSON Twilio returns for this message."""
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_sent": rfc2822(self.date_sent),
            "date_updated": rfc2822(self.date_updated),
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": str(len(self.media_urls)),
            "num_segments": str(self.num_segments),
            "price": self.price,
            "price_unit": self.price_unit,
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": self.to,
            "uri": f"{uri}.json",
        }


@dataclass
class RecordedRequest:
    """One request to the API (control calls under /_fake/ are not recorded)."""

    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, Any]  # scalar fields as str, array fields (MediaUrl, PersistentAction) as list[str]
    headers: dict[str, str]
    auth: tuple[str, str] | None  # the decoded Basic credentials
    status: int  # HTTP status answered; 0 when the connection was closed without an answer
    sid: str | None = None  # the message created or addressed
    error_code: int | None = None
    at: float = field(default_factory=time.time)

    def as_json(self) -> dict:
        return asdict(self)


@dataclass
class Behaviour:
    """A scripted answer. `to=None` applies to every destination; `times=None` forever."""

    to: str | None = None
    op: str = "create"  # create | fetch | list | update | delete | any
    code: int | None = None  # answer with this Twilio error instead of succeeding
    status: int | None = None  # HTTP status for `code` (defaults from ERRORS, else 400)
    message: str | None = None
    delay: float = 0.0  # seconds to wait before answering
    drop: bool = False  # close the connection without answering
    accept: bool = True  # for create with drop/delay: the message exists although no answer came
    times: int | None = None

    def matches(self, op: str, to: str | None) -> bool:
        if self.op not in (op, "any"):
            return False
        if self.to is None:
            return True
        return to is not None and (to == self.to or to.split(":", 1)[-1] == self.to.split(":", 1)[-1])


@dataclass
class SentCallback:
    url: str
    params: dict[str, str]
    signature: str
    status_code: int | None  # the receiver's answer; None if it could not be reached
    error: str = ""


class FakeTwilio:
    """The fake's state and server. Use as a context manager, or `start()` / `stop()`."""

    def __init__(self, *, account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN,
                 host: str = "127.0.0.1", port: int = 0, spec: MessagesSpec | None = None,
                 service_sender: str = DEFAULT_SERVICE_SENDER):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.host = host
        self.port = port
        self.spec = spec or MessagesSpec()
        self.service_sender = service_sender
        self._lock = threading.RLock()
        self._messages: dict[str, FakeMessage] = {}
        self._created: list[FakeMessage] = []  # every message ever created, deleted ones included
        self._requests: list[RecordedRequest] = []
        self._scripts: list[Behaviour] = []
        self._callbacks: list[SentCallback] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> FakeTwilio:
        self._stopping.clear()
        self._server = _Server((self.host, self.port), _Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fake-twilio:{self.port}",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, *, timeout: float = 5.0):
        """A real `twilio.rest.Client` pointed at this fake."""
        from channels_hub.providers.twilio_http import make_twilio_client

        return make_twilio_client(account_sid=self.account_sid, auth_token=self.auth_token,
                                  base_url=self.base_url, timeout=timeout)

    # scripting
    def script(self, to: str | None = None, *, code: int | None = None, status: int | None = None,
               message: str | None = None, delay: float = 0.0, drop: bool = False, accept: bool = True,
               times: int | None = None, op: str = "create") -> Behaviour:
        """Make the next matching requests misbehave; per-destination scripts win over global ones.

        fake.script("+393331234567", code=21610)        # that number is unsubscribed
        fake.script(code=20429, times=2)                 # the next two creates get 429
        fake.script(delay=3)                             # created, answered after 3 s
        fake.script(drop=True)                           # created, connection closed, no answer
        fake.script(drop=True, accept=False)             # connection closed, nothing created
        """
        if code is not None and code not in ERRORS and status is None:
            raise ValueError(f"unknown Twilio code {code}: give its HTTP status too")
        behaviour = Behaviour(to=to, op=op, code=code, status=status, message=message, delay=delay,
                              drop=drop, accept=accept, times=times)
        with self._lock:
            self._scripts.append(behaviour)
        return behaviour

    def reset(self) -> None:
        """Forget messages, requests, scripts and callbacks (the server keeps running)."""
        with self._lock:
            self._messages.clear()
            self._created.clear()
            self._requests.clear()
            self._scripts.clear()
            self._callbacks.clear()

    def _take_behaviour(self, op: str, to: str | None) -> Behaviour | None:
        with self._lock:
            candidates = [b for b in self._scripts if b.matches(op, to)]
            chosen = next((b for b in candidates if b.to is not None), None) or next(iter(candidates), None)
            if chosen is not None and chosen.times is not None:
                chosen.times -= 1
                if chosen.times <= 0:
                    self._scripts.remove(chosen)
            return chosen

    # inspection
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def messages(self) -> list[FakeMessage]:
        """Every message created, in creation order (deleted ones included)."""
        with self._lock:
            return list(self._created)

    @property
    def callbacks(self) -> list[SentCallback]:
        with self._lock:
            return list(self._callbacks)

    def message(self, sid: str) -> FakeMessage:
        with self._lock:
            return self._messages[sid]

    def count(self, marker: str | None = None, *, to: str | None = None, body: str | None = None) -> int:
        """Messages created whose body contains `marker` and/or whose To and Body equal `to`/`body`."""
        with self._lock:
            return sum(
                1 for m in self._created
                if (marker is None or marker in m.body) and (to is None or m.to == to)
                and (body is None or m.body == body)
            )

    # status changes and callbacks
    def set_status(self, sid: str, status: str, error_code: int | None = None,
                   error_message: str | None = None) -> FakeMessage:
        """Move a message to `status` as Twilio would (no ordering enforced: tests may replay)."""
        if status not in self.spec.statuses:
            raise ValueError(f"{status!r} is not a documented message status")
        now = datetime.now(UTC)
        with self._lock:
            msg = self._messages[sid]
            msg.status = status
            msg.date_updated = now
            if status in ("sent", "delivered", "undelivered", "read", "failed") and msg.date_sent is None:
                msg.date_sent = now
            if msg.from_ is None and status not in ("accepted", "queued", "scheduled", "canceled"):
                msg.from_ = self.service_sender
            if status in ("sent", "delivered", "read", "undelivered") and msg.price is None:
                msg.price, msg.price_unit = f"-{0.0079 * msg.num_segments:.5f}", "USD"
            if status in ("failed", "undelivered"):
                msg.error_code = error_code or 30008
                msg.error_message = error_message or DELIVERY_ERRORS.get(msg.error_code, "Unknown error")
            return msg

    def status_callback_params(self, msg: FakeMessage) -> dict[str, str]:
        """The form fields Twilio POSTs to a message's StatusCallback URL."""
        params = {
            "SmsSid": msg.sid, "SmsStatus": msg.status, "MessageStatus": msg.status,
            "To": msg.to, "MessageSid": msg.sid, "AccountSid": msg.account_sid,
            "From": msg.from_ or self.service_sender, "ApiVersion": API_VERSION,
        }
        if msg.messaging_service_sid:
            params["MessagingServiceSid"] = msg.messaging_service_sid
        if msg.status in ("failed", "undelivered") and msg.error_code is not None:
            params["ErrorCode"] = str(msg.error_code)
        if msg.to.startswith("whatsapp:"):
            params["ChannelPrefix"] = "whatsapp"
            params["ChannelToAddress"] = msg.to.split(":", 1)[1]
        elif msg.status == "delivered" and msg.date_updated:
            params["RawDlrDoneDate"] = msg.date_updated.strftime("%y%m%d%H%M")
        return params

    def send_status_callback(self, sid: str, status: str, error_code: int | None = None, *,
                             url: str | None = None, timeout: float = 10.0) -> SentCallback:
        """Move the message to `status` and POST Twilio's signed status callback to its StatusCallback.

        Returns what was sent and the receiver's HTTP status (None if it could not be reached).
        """
        msg = self.set_status(sid, status, error_code)
        target = url or msg.status_callback
        if not target:
            raise ValueError(f"message {sid} was created without a StatusCallback")
        params = self.status_callback_params(msg)
        signature = sign_twilio_request(target, params, self.auth_token)
        sent = SentCallback(url=target, params=params, signature=signature, status_code=None)
        try:
            sent.status_code = _post_form(target, params, signature, timeout=timeout).status_code
        except requests.RequestException as exc:
            sent.error = repr(exc)
        with self._lock:
            self._callbacks.append(sent)
        return sent

    # request handling (called from server threads)
    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(req)

    def _create(self, fields: dict[str, list[str]]) -> FakeMessage:
        form = self._form_view(self.spec.create_schema, fields)
        now = datetime.now(UTC)
        media = list(form.get("MediaUrl", []))
        to = form["To"]
        from_ = form.get("From") or None
        service = form.get("MessagingServiceSid") or None
        body = form.get("Body", "")
        scheduled = form.get("ScheduleType") == "fixed"
        if to.startswith(("whatsapp:", "messenger:", "rcs:")):
            parts = 1
        elif service and not from_:
            parts = 0  # documented: 0 until the Messaging Service has picked a sender
        else:
            parts = segments(body)
        msg = FakeMessage(
            sid=("MM" if media else "SM") + uuid.uuid4().hex, account_sid=self.account_sid, to=to,
            from_=from_, body=body, messaging_service_sid=service,
            status="scheduled" if scheduled else "queued", num_segments=parts, media_urls=media,
            status_callback=form.get("StatusCallback") or None, date_created=now, date_updated=now,
            date_sent=None, form=form,  # as Twilio: set once the message has actually been sent
        )
        with self._lock:
            self._messages[msg.sid] = msg
            self._created.append(msg)
        return msg

    def _form_view(self, schema: dict, fields: dict[str, list[str]]) -> dict[str, Any]:
        return {k: (v if self.spec.is_array(schema, k) else v[-1]) for k, v in fields.items()}

    def _create_rules(self, form: dict[str, Any]) -> tuple[int, str] | None:
        """Twilio's documented rules beyond the schema, in the order Twilio applies them."""
        if not form.get("To"):
            return 21604, ERRORS[21604][1]
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return 21603, ERRORS[21603][1]
        if not form.get("Body") and not form.get("MediaUrl") and not form.get("ContentSid"):
            return 21602, ERRORS[21602][1]
        return None

    def _create_value_rules(self, form: dict[str, Any]) -> tuple[int, str] | None:
        to, from_ = form["To"], form.get("From")
        if not _TO_RE.match(to):
            return 21211, f"The 'To' number {to} is not a valid phone number."
        if from_ and not _FROM_RE.match(from_):
            return 21212, f"The 'From' number {from_} is not a valid phone number, shortcode, or alphanumeric sender ID."
        if from_ and _channel(to) != _channel(from_):
            return 21910, ERRORS[21910][1]
        if len(form.get("Body", "")) > 1600:
            return 21617, ERRORS[21617][1]
        if "ContentVariables" in form:
            try:
                variables = json.loads(form["ContentVariables"])
            except ValueError:
                variables = None
            if not isinstance(variables, dict):
                return 21656, ERRORS[21656][1]
        return None


def _channel(address: str) -> str:
    return address.split(":", 1)[0] if ":" in address else ""


def _post_form(url: str, params: dict[str, str], signature: str, *, timeout: float) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False  # a local receiver: never via a proxy from the environment
        return session.post(url, data=params, timeout=timeout, headers={
            "X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        })


# --- HTTP ----------------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeTwilio


class _Dropped(Exception):
    """The handler closed the connection on purpose."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "FakeTwilio/1.0"

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        # Headers and body are two writes: without NODELAY, Nagle + delayed ACK add ~40 ms per answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.fake._lock:
            self.server.fake._connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.fake._lock:
            self.server.fake._connections.discard(self.connection)

    def log_message(self, format: str, *args) -> None:
        pass  # quiet: pytest shows the recorded requests when an assertion needs them

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # plumbing
    @property
    def fake(self) -> FakeTwilio:
        return self.server.fake

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            if payload is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Twilio-Request-Id", "RQ" + uuid.uuid4().hex)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if data:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout): that is the point of a delay

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        raise _Dropped

    def _error(self, code: int, message: str | None = None, status: int | None = None) -> tuple[int, dict]:
        body = twilio_error_body(code, message, status)
        return body["status"], body

    def _auth(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user, password

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.fake._stopping.wait(seconds)

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        try:
            if parts.path.startswith("/_fake/"):
                self._control(method, parts.path, parse_qs(parts.query))
            else:
                self._api(method, parts.path, parse_qs(parts.query, keep_blank_values=True))
        except _Dropped:
            pass

    # the Twilio API
    def _api(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        fake = self.fake
        raw = self._read_body()
        fields: dict[str, list[str]] = {}
        content_type = self.headers.get("Content-Type", "")
        if raw and "application/x-www-form-urlencoded" in content_type:
            fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
        auth = self._auth()
        record = RecordedRequest(method=method, path=path, query=query, form={}, headers=dict(self.headers.items()),
                                 auth=auth, status=0)

        def answer(status: int, payload: Any = None, *, sid: str | None = None) -> None:
            record.status, record.sid = status, sid
            if isinstance(payload, dict) and "code" in payload and status >= 400:
                record.error_code = payload["code"]
            fake._record(record)
            self._send(status, payload, {"WWW-Authenticate": 'Basic realm="Twilio API"'} if status == 401 else None)

        list_match, instance_match = _LIST_RE.match(path), _INSTANCE_RE.match(path)
        if not (list_match or instance_match):
            return answer(*self._error(20404, f"The requested resource {path} was not found"))
        account = (list_match or instance_match)["account"]
        if (auth is None or not hmac.compare_digest(auth[0], fake.account_sid)
                or not hmac.compare_digest(auth[1], fake.auth_token)):
            status, body = self._error(20003)
            body["detail"] = "Your AccountSid or AuthToken was incorrect."
            return answer(status, body)
        if account != fake.account_sid:
            return answer(*self._error(20003, f"Credentials do not grant access to account {account}"))
        if raw and "application/x-www-form-urlencoded" not in content_type:
            return answer(*self._error(20001, f"Unsupported Content-Type {content_type!r}: send form fields"))

        if list_match and method == "POST":
            return self._create(fields, record, answer)
        if list_match and method == "GET":
            return self._list(path, query, record, answer)
        sid = instance_match["sid"] if instance_match else None
        if instance_match and method in ("GET", "POST", "DELETE"):
            return self._instance(method, sid, fields, record, answer)
        return answer(*self._error(20004, f"Method {method} not allowed on {path}"))

    def _apply_errors(self, behaviour: Behaviour | None, answer) -> bool:
        """Scripted error: wait, answer with it, report True."""
        if behaviour is None or behaviour.code is None:
            return False
        self._wait(behaviour.delay)
        answer(*self._error(behaviour.code, behaviour.message, behaviour.status))
        return True

    def _create(self, fields, record: RecordedRequest, answer) -> None:
        fake = self.fake
        schema = fake.spec.create_schema
        record.form = fake._form_view(schema, fields)
        problem = fake.spec.validate_form(schema, fields) or fake._create_rules(record.form) \
            or fake._create_value_rules(record.form)
        if problem:
            return answer(*self._error(*problem))
        behaviour = fake._take_behaviour("create", record.form["To"])
        if self._apply_errors(behaviour, answer):
            return None
        if behaviour and behaviour.drop and not behaviour.accept:
            fake._record(record)  # status 0: no answer, nothing created
            return self._drop()
        msg = fake._create(fields)
        if behaviour and behaviour.drop:
            record.sid = msg.sid
            fake._record(record)
            return self._drop()
        if behaviour:
            self._wait(behaviour.delay)
        return answer(201, msg.resource(), sid=msg.sid)

    def _list(self, path: str, query: dict[str, list[str]], record: RecordedRequest, answer) -> None:
        fake = self.fake
        record.form = {}
        for name, values in query.items():
            if name not in fake.spec.list_params:
                return answer(*self._error(20001, f"Unknown parameter: {name}"))
            reason = fake.spec.check_value(fake.spec.list_params[name], values[-1])
            if reason and name.startswith("DateSent") and _parse_when(values[-1]) is not None:
                reason = None
            if reason:
                return answer(*self._error(_FIELD_CODES.get(name, 20001), f"Invalid parameter {name}: {reason}"))
        q = {k: v[-1] for k, v in query.items()}
        behaviour = fake._take_behaviour("list", q.get("To"))
        if self._apply_errors(behaviour, answer):
            return None
        if behaviour and behaviour.drop:
            fake._record(record)
            return self._drop()
        if behaviour:
            self._wait(behaviour.delay)
        with fake._lock:
            found = [m for m in fake._created if not m.deleted and _list_match(m, q)]
        found.sort(key=lambda m: m.date_created, reverse=True)
        page_size = int(q.get("PageSize", 50))
        page = int(q.get("Page", 0))
        chunk = found[page * page_size:(page + 1) * page_size]
        base = {k: v for k, v in q.items() if k not in ("Page", "PageSize", "PageToken")}

        def page_uri(number: int) -> str:
            extra = {"PageSize": page_size, "Page": number}
            if number:
                extra["PageToken"] = f"PA{number}"
            return f"{path}?{urlencode({**base, **extra})}"

        has_next = (page + 1) * page_size < len(found)
        return answer(200, {
            "end": page * page_size + max(len(chunk) - 1, 0),
            "first_page_uri": page_uri(0),
            "messages": [m.resource() for m in chunk],
            "next_page_uri": page_uri(page + 1) if has_next else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            "start": page * page_size,
            "uri": f"{path}?{urlencode(q)}" if q else path,
        })

    def _instance(self, method: str, sid: str, fields, record: RecordedRequest, answer) -> None:
        fake = self.fake
        op = {"GET": "fetch", "POST": "update", "DELETE": "delete"}[method]
        if fake.spec.check_value(fake.spec.path_params["Sid"], sid):
            return answer(*self._error(20404, f"The requested resource {self.path} was not found"))
        with fake._lock:
            msg = fake._messages.get(sid)
        if msg is None or msg.deleted:
            return answer(*self._error(20404, f"The requested resource {self.path} was not found"))
        behaviour = fake._take_behaviour(op, msg.to)
        if self._apply_errors(behaviour, answer):
            return None
        if behaviour and behaviour.drop:
            fake._record(record)
            return self._drop()
        if behaviour:
            self._wait(behaviour.delay)
        if method == "GET":
            return answer(200, msg.resource(), sid=sid)
        if method == "DELETE":
            with fake._lock:
                msg.deleted = True
            return answer(204, None, sid=sid)
        schema = fake.spec.update_schema
        problem = fake.spec.validate_form(schema, fields)
        record.form = {k: v[-1] for k, v in fields.items()}
        if problem:
            return answer(*self._error(*problem))
        if "Body" in record.form and record.form["Body"] != "":
            return answer(*self._error(20001, "Body can only be redacted: set it to an empty string"))
        with fake._lock:
            if record.form.get("Status") == "canceled":
                if msg.status not in ("scheduled", "queued", "accepted"):
                    return answer(*self._error(20001, f"A message in status {msg.status} cannot be canceled"))
                msg.status = "canceled"
            if "Body" in record.form:
                msg.body = ""
            msg.date_updated = datetime.now(UTC)
        return answer(200, msg.resource(), sid=sid)

    # the control API
    def _control(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        fake = self.fake
        raw = self._read_body()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            return self._send(400, {"error": "body must be JSON"})
        q = {k: v[-1] for k, v in query.items()}
        route = (method, path.rstrip("/"))
        if route == ("GET", "/_fake/health"):
            return self._send(200, {"ok": True, "account_sid": fake.account_sid})
        if route == ("GET", "/_fake/messages"):
            return self._send(200, {"messages": [
                {**m.resource(), "status_callback": m.status_callback, "form": m.form, "deleted": m.deleted}
                for m in fake.messages
            ]})
        if route == ("GET", "/_fake/requests"):
            return self._send(200, {"requests": [r.as_json() for r in fake.requests]})
        if route == ("GET", "/_fake/callbacks"):
            return self._send(200, {"callbacks": [asdict(c) for c in fake.callbacks]})
        if route == ("GET", "/_fake/count"):
            return self._send(200, {"count": fake.count(q.get("key"), to=q.get("to"), body=q.get("body"))})
        if route == ("POST", "/_fake/script"):
            try:
                fake.script(**data)
            except (TypeError, ValueError) as exc:
                return self._send(400, {"error": str(exc)})
            return self._send(200, {"ok": True})
        if route == ("POST", "/_fake/reset"):
            fake.reset()
            return self._send(200, {"ok": True})
        if route == ("POST", "/_fake/status"):
            try:
                sent = fake.send_status_callback(data["sid"], data["status"], data.get("error_code"))
            except (KeyError, ValueError) as exc:
                return self._send(400, {"error": str(exc)})
            return self._send(200, asdict(sent))
        return self._send(404, {"error": f"no control route {method} {path}"})


def _list_match(msg: FakeMessage, q: dict[str, str]) -> bool:
    if "To" in q and msg.to != q["To"]:
        return False
    if "From" in q and msg.from_ != q["From"]:
        return False
    for name in ("DateSent", "DateSent<", "DateSent>"):
        if name not in q:
            continue
        when = _parse_when(q[name])
        if msg.date_sent is None or when is None:
            return False
        sent: datetime | date = msg.date_sent if isinstance(when, datetime) else msg.date_sent.date()
        if (name == "DateSent" and sent != when) or (name == "DateSent<" and sent > when) \
                or (name == "DateSent>" and sent < when):
            return False
    return True


# --- webhooks --------------------------------------------------------------------------------

def sign_twilio_request(url: str, params: dict, auth_token: str) -> str:
    """The X-Twilio-Signature Twilio sends with a form POST of `params` to `url`."""
    return RequestValidator(auth_token).compute_signature(url, params)


def load_twilio_fixture(name: str, *, sid: str | None = None, **overrides: str) -> dict[str, str]:
    """A webhook payload from tests/fixtures/twilio/<name>.json (form fields), with overrides.

    `sid` replaces the message sid everywhere it appears (MessageSid, SmsSid, SmsMessageSid).

        load_twilio_fixture("inbound_stop", From="+393339876543")
        load_twilio_fixture("status_delivered", sid=message.provider_id)
    """
    path = WEBHOOK_FIXTURES / (name if name.endswith(".json") else f"{name}.json")
    params = json.loads(path.read_text(encoding="utf-8"))
    if sid is not None:
        params.update({key: sid for key in ("MessageSid", "SmsSid", "SmsMessageSid") if key in params})
    params.update(overrides)
    return params


def build_inbound_message(url: str, auth_token: str, *, from_: str, to: str, body: str,
                          account_sid: str = DEFAULT_ACCOUNT_SID, messaging_service_sid: str | None = None,
                          media: list[tuple[str, str]] = (), profile_name: str = "Patient",
                          message_sid: str | None = None) -> tuple[dict[str, str], str]:
    """The form fields of an incoming SMS or WhatsApp message and their X-Twilio-Signature for `url`.

    WhatsApp when `from_` starts with "whatsapp:" (adds ProfileName, WaId, MessageType).
    `media` is a list of (url, content_type). Returns (params, signature).
    """
    sid = message_sid or ("MM" if media else "SM") + uuid.uuid4().hex
    params = {
        "MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid, "AccountSid": account_sid,
        "From": from_, "To": to, "Body": body, "NumMedia": str(len(media)),
        "NumSegments": str(1 if from_.startswith("whatsapp:") else segments(body)),
        "SmsStatus": "received", "ApiVersion": API_VERSION,
    }
    if messaging_service_sid:
        params["MessagingServiceSid"] = messaging_service_sid
    for index, (media_url, content_type) in enumerate(media):
        params[f"MediaUrl{index}"] = media_url
        params[f"MediaContentType{index}"] = content_type
    if from_.startswith("whatsapp:"):
        params["ProfileName"] = profile_name
        params["WaId"] = from_.split(":", 1)[1].lstrip("+")
        params["MessageType"] = "text" if not media else media[0][1].split("/", 1)[0]
        params["ReferralNumMedia"] = "0"
    return params, sign_twilio_request(url, params, auth_token)


# --- another process --------------------------------------------------------------------------

class FakeTwilioControl:
    """Talks to a fake running in another process through its /_fake/ control API."""

    def __init__(self, base_url: str, *, account_sid: str = DEFAULT_ACCOUNT_SID,
                 auth_token: str = DEFAULT_AUTH_TOKEN, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.timeout = timeout
        self._session = requests.Session()
        self._session.trust_env = False

    def _call(self, method: str, route: str, **kwargs) -> dict:
        response = self._session.request(method, f"{self.base_url}/_fake/{route}", timeout=self.timeout, **kwargs)
        response.raise_for_status()
        return response.json()

    def health(self) -> bool:
        return bool(self._call("GET", "health").get("ok"))

    def messages(self) -> list[dict]:
        return self._call("GET", "messages")["messages"]

    def requests(self) -> list[dict]:
        return self._call("GET", "requests")["requests"]

    def count(self, key: str | None = None, *, to: str | None = None, body: str | None = None) -> int:
        params = {k: v for k, v in {"key": key, "to": to, "body": body}.items() if v is not None}
        return self._call("GET", "count", params=params)["count"]

    def script(self, to: str | None = None, **behaviour) -> None:
        self._call("POST", "script", json={"to": to, **behaviour})

    def reset(self) -> None:
        self._call("POST", "reset")

    def send_status_callback(self, sid: str, status: str, error_code: int | None = None) -> dict:
        return self._call("POST", "status", json={"sid": sid, "status": status, "error_code": error_code})

    def close(self) -> None:
        self._session.close()


@contextlib.contextmanager
def fake_twilio_process(*, port: int = 0, account_sid: str = DEFAULT_ACCOUNT_SID,
                        auth_token: str = DEFAULT_AUTH_TOKEN, startup_timeout: float = 15.0
                        ) -> Iterator[FakeTwilioControl]:
    """Run the fake as its own process (so the code under test can crash without taking it along)."""
    root = HERE.parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.twilio_server", "--port", str(port),
         "--account-sid", account_sid, "--auth-token", auth_token],
        cwd=root, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    control = None
    try:
        line = _readline(proc, startup_timeout)
        if not line.startswith("fake-twilio listening on "):
            raise RuntimeError(f"fake Twilio did not start: {line!r}")
        control = FakeTwilioControl(line.rsplit(" ", 1)[1].strip(), account_sid=account_sid, auth_token=auth_token)
        yield control
    finally:
        if control is not None:
            control.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the local fake of Twilio's Messages API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (printed on start)")
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    args = parser.parse_args(argv)
    fake = FakeTwilio(account_sid=args.account_sid, auth_token=args.auth_token, host=args.host, port=args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with fake:
        print(f"fake-twilio listening on {fake.base_url}", flush=True)
        print(f"account {fake.account_sid} token {fake.auth_token}; control API at {fake.base_url}/_fake/",
              file=sys.stderr, flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
