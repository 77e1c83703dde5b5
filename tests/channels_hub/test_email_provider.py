"""Email through Django's smtp backend against real local SMTP servers: text + HTML parts, attachments from
the hook, refused recipients (permanent vs. temporary), and a server that stops answering (unknown)."""

import asyncio
import datetime as dt
import threading

import pytest
from aiosmtpd.controller import Controller

from messaging.dispatch import reconcile
from messaging.hooks import register_email_attachments
from messaging.models import AttemptOutcome, MessageStatus, MessageTemplate
from messaging.services import message_send
from patients.models import ContactPoint
from tests.fakes.smtp_server import free_port
from tests.messaging.spine import PATIENT_EMAIL, REMINDER_CONTEXT, drain

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2030, 3, 4, 10, 0, tzinfo=dt.UTC)


class PickySmtp:
    """An SMTP server that refuses some recipients (with the given reply) and can stall after DATA."""

    def __init__(self, refuse: dict[str, str] | None = None, stall: float = 0.0):
        self.refuse = refuse or {}
        self.stall = stall
        self.received: list[bytes] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, ready_timeout=10)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.received.append(envelope.content)
        if self.stall:
            await asyncio.sleep(self.stall)
        return "250 Message accepted for delivery"

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


@pytest.fixture(autouse=True)
def frozen(time_machine):
    time_machine.move_to(NOW, tick=False)
    return time_machine


@pytest.fixture
def email_only(patient, twilio_accounts):
    patient.preferred_channels = ["email"]
    patient.save()
    return patient


def use_smtp(settings, server):
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port


def send_reminder(patient, key="r1", template="reminder"):
    return message_send(patient=patient, purpose="care", template=template, context=REMINDER_CONTEXT,
                        idempotency_key=key)


def test_email_has_subject_from_text_and_html_and_our_reference(email_only, reminder_template, smtp_server):
    msg = send_reminder(email_only)

    drain()

    (mail,) = smtp_server.messages
    assert mail.mail_from == "clinic@example.org"
    assert mail.rcpt_tos == [PATIENT_EMAIL]
    assert mail.subject == "Promemoria"
    assert mail.message["From"] == "Clinica Roma <clinic@example.org>"
    assert mail.message["X-Touchpoint-Reference"] == str(msg.pk)
    assert mail.body("plain").strip() == "Ciao Anna, appuntamento lun 10:00."
    assert "<p>Ciao Anna, appuntamento lun 10:00.</p>" in mail.body("html")
    msg.refresh_from_db()
    assert msg.status == MessageStatus.SENT
    assert msg.provider_id == mail.message["Message-ID"]


def test_attachment_hook_adds_an_ics_file(email_only, smtp_server):
    # given appointment emails carry a calendar invitation
    MessageTemplate.objects.create(name="test_appointment_ics", purpose="care", language="it", subject="Appuntamento",
                                   body="Ciao {{ first_name }}, {{ when }}.")
    ics = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"
    register_email_attachments("test_appointment_ics", lambda message: [("invito.ics", ics, "text/calendar")])

    # when one is sent
    send_reminder(email_only, template="test_appointment_ics")
    drain()

    # then the mail has text, HTML and the .ics attachment
    (mail,) = smtp_server.messages
    (attachment,) = list(mail.message.iter_attachments())
    assert attachment.get_filename() == "invito.ics"
    assert attachment.get_content_type() == "text/calendar"
    assert "BEGIN:VCALENDAR" in attachment.get_content()
    assert mail.body("plain") and mail.body("html")


def test_recipient_refused_for_good_marks_the_address_invalid(email_only, reminder_template, settings):
    # given the mail server says the mailbox does not exist
    with PickySmtp(refuse={PATIENT_EMAIL: "550 5.1.1 No such user"}) as server:
        use_smtp(settings, server)
        msg = send_reminder(email_only)

        # when the worker sends it
        drain()

    # then the address is kept but marked invalid, and with no other channel the message failed, saying why
    cp = ContactPoint.objects.get(patient=email_only, kind="email")
    assert cp.is_valid is False
    msg.refresh_from_db()
    assert (msg.status, msg.error_code) == (MessageStatus.FAILED, "invalid_address")
    assert server.received == []


def test_recipient_refused_for_now_is_retried_and_the_address_kept_valid(email_only, reminder_template, settings):
    # given the mail server greylists the recipient (451: try again later)
    with PickySmtp(refuse={PATIENT_EMAIL: "451 4.7.1 Greylisted, try again later"}) as server:
        use_smtp(settings, server)
        msg = send_reminder(email_only)

        # when the worker sends it
        drain()

    # then it will be retried, and the address is still good
    msg.refresh_from_db()
    assert msg.status == MessageStatus.QUEUED
    assert msg.attempts.get().outcome == AttemptOutcome.RETRY
    assert ContactPoint.objects.get(patient=email_only, kind="email").is_valid is True


def test_mail_server_that_stops_answering_after_data_leaves_the_outcome_unknown_and_never_resends(
        email_only, reminder_template, settings, frozen):
    # given a server that takes the message but does not confirm within our timeout
    settings.EMAIL_TIMEOUT = 1
    with PickySmtp(stall=3) as server:
        use_smtp(settings, server)
        msg = send_reminder(email_only)

        # when the worker sends it, and the relay runs later
        drain()
        msg.refresh_from_db()
        assert msg.status == MessageStatus.UNKNOWN
        frozen.shift(dt.timedelta(seconds=settings.RECONCILE_AFTER_SECONDS + 1))
        reconcile()
        drain()
        frozen.shift(dt.timedelta(hours=1))
        reconcile()
        drain()

    # then it is honestly unknown (SMTP cannot be asked) and was handed over only once
    msg.refresh_from_db()
    assert msg.status == MessageStatus.UNKNOWN
    assert msg.attempts.get().outcome == AttemptOutcome.UNKNOWN
    assert len(server.received) == 1
