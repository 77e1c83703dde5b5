"""A real SMTP server for tests: aiosmtpd's threaded Controller on a free local port, keeping each mail.

Django's smtp EmailBackend talks to it over a real socket (EHLO, MAIL FROM, RCPT TO, DATA), so a test
sees what a mail relay would receive: the envelope and the parsed MIME message.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str  # the envelope sender
    rcpt_tos: list[str]  # the envelope recipients (Bcc included)
    data: bytes  # the raw message as received
    message: EmailMessage  # parsed with the modern email policy

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def body(self, subtype: str = "plain") -> str:
        """The text/<subtype> part's content ('' if the message has none)."""
        part = self.message.get_body(preferencelist=(subtype,))
        return part.get_content() if part is not None else ""


class _Handler:
    def __init__(self, sink: SmtpSink):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.sink._add(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content), message))
        return "250 Message accepted for delivery"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class SmtpSink:
    """Start with `with SmtpSink() as smtp:`; `smtp.messages` lists what arrived."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None):
        self.host = host
        self.port = port or free_port(host)
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self._controller = Controller(_Handler(self), hostname=host, port=self.port, ready_timeout=10)

    def _add(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._messages.append(mail)

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()
