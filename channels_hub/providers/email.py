"""Email through Django's email backend (SMTP in production, any backend via EMAIL_URL).

Sends a plain-text and an HTML part, plus any attachments (e.g. an .ics invitation).
SMTP cannot be asked afterwards whether a message went out, so an ambiguous failure stays unknown.
"""

from __future__ import annotations

import contextlib
import smtplib
import uuid

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.message import make_msgid
from django.utils.html import linebreaks, urlize

from channels_hub.providers import register
from channels_hub.providers.base import Outbound, Provider, SendResult, TransportError


def html_from_text(text: str) -> str:
    """The plain-text body as a minimal HTML document (escaped; paragraphs and links kept)."""
    inner = linebreaks(urlize(text or "", nofollow=True, autoescape=True), autoescape=False)
    return f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>{inner}</body></html>'


@register
class EmailProvider(Provider):
    kind = "email"
    channel = "email"
    max_body_length = 100_000

    @property
    def request_timeout(self) -> float:
        return settings.EMAIL_TIMEOUT

    def _message(self, o: Outbound, connection) -> EmailMultiAlternatives:
        domain = (self.account.sender or settings.DEFAULT_FROM_EMAIL).rsplit("@", 1)[-1].strip(">") or "touchpoint"
        msg = EmailMultiAlternatives(
            subject=o.subject or "", body=o.body, from_email=self.account.sender or settings.DEFAULT_FROM_EMAIL,
            to=[o.to], connection=connection,
            headers={"Message-ID": make_msgid(idstring=o.reference or uuid.uuid4().hex, domain=domain),
                     "X-Touchpoint-Reference": o.reference},
        )
        # Every mail has an HTML part: the one given, else the text escaped, links made clickable.
        msg.attach_alternative(o.html or html_from_text(o.body), "text/html")
        for filename, content, mimetype in o.attachments:
            msg.attach(filename, content, mimetype)
        return msg

    def send(self, outbound: Outbound) -> SendResult:
        return self._raise_or_return(self.send_many([outbound])[0])

    @staticmethod
    def _raise_or_return(result):
        if isinstance(result, TransportError):
            raise result
        return result

    def send_many(self, outbounds):
        try:
            connection = get_connection(fail_silently=False, timeout=settings.EMAIL_TIMEOUT)
            connection.open()
        except (OSError, smtplib.SMTPException) as exc:
            err = TransportError(f"mail server unavailable: {exc}", permanent=False, code="connect")
            return [err for _ in outbounds]
        results = []
        try:
            for o in outbounds:
                msg = self._message(o, connection)
                try:
                    msg.send()
                    results.append(SendResult(provider_id=msg.extra_headers["Message-ID"], status="sent"))
                except smtplib.SMTPRecipientsRefused as exc:
                    # 5xx: the mailbox does not exist; 4xx (greylisting, full mailbox): try again later.
                    codes = [code for code, _msg in exc.recipients.values()]
                    if codes and all(500 <= code < 600 for code in codes):
                        results.append(TransportError(f"recipient refused: {exc.recipients}", permanent=True,
                                                      code="invalid_address"))
                    else:
                        results.append(TransportError(f"recipient refused for now: {exc.recipients}", permanent=False,
                                                      code=str(max(codes, default=450))))
                except smtplib.SMTPResponseException as exc:
                    permanent = 500 <= exc.smtp_code < 600
                    results.append(TransportError(f"{exc.smtp_code} {exc.smtp_error!r}", permanent=permanent,
                                                  code=str(exc.smtp_code)))
                except (TimeoutError, smtplib.SMTPServerDisconnected) as exc:
                    results.append(TransportError(f"mail server stopped answering: {exc}", permanent=False,
                                                  unknown=True, code="timeout"))
                    break
        finally:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                connection.close()
        results.extend(
            TransportError("not attempted after a connection failure", permanent=False, code="connect")
            for _ in outbounds[len(results):]
        )
        return results
