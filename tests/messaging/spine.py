"""Fixtures and helpers for the messaging spine tests (used by tests/messaging and tests/channels_hub)."""

import datetime as dt

import pytest
from django.db import connection

from channels_hub.inbound import inbound_event_process
from channels_hub.models import ChannelAccount, InboundEvent
from consent.models import Purpose
from messaging.dispatch import dispatch_once
from messaging.models import MessageTemplate
from patients.services import contact_point_add
from tests.factories import PatientFactory, consent_event

PUBLIC_BASE_URL = "https://clinic.example.org"
CLINIC_NUMBER = "+390612345678"
PATIENT_MOBILE = "+393471234567"
PATIENT_EMAIL = "anna.rossi@example.org"
CONTENT_SID = "HX" + "ab12" * 8
# Consent given long ago, so tests may travel to any date after it.
CONSENTED_AT = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def sandbox_accounts(site_a):
    return {
        ch: ChannelAccount.objects.create(site=site_a, channel=ch, provider="sandbox",
                                          sender=CLINIC_NUMBER if ch != "email" else "clinic@example.org")
        for ch in ("sms", "whatsapp", "email")
    }


@pytest.fixture
def public_url(settings):
    """Twilio signs and calls back the public URL, not the one Django sees behind the proxy."""
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    return PUBLIC_BASE_URL


@pytest.fixture
def twilio(fake_twilio_settings, public_url):
    """The fake Twilio API with Django's Twilio settings pointing at it (timeout 2 s)."""
    return fake_twilio_settings


@pytest.fixture
def twilio_accounts(site_a, twilio, smtp_email_settings):
    """Site A sends SMS and WhatsApp through (fake) Twilio and email through a real local SMTP server."""
    accounts = {
        ch: ChannelAccount.objects.create(site=site_a, channel=ch, provider="twilio", sender=CLINIC_NUMBER,
                                          credentials_env="TWILIO")
        for ch in ("sms", "whatsapp")
    }
    accounts["email"] = ChannelAccount.objects.create(site=site_a, channel="email", provider="email",
                                                      sender="Clinica Roma <clinic@example.org>")
    return accounts


@pytest.fixture
def patient(site_a):
    """A patient of site A reachable on SMS and email, consenting to care on both."""
    p = PatientFactory(home_site=site_a, given_name="Anna", language="it",
                       preferred_channels=["whatsapp", "sms", "email"])
    contact_point_add(patient=p, kind="phone", value="+39 347 123 4567")
    contact_point_add(patient=p, kind="email", value="Anna.Rossi@Example.org")
    for channel in ("sms", "email"):
        consent_event(p, channel, Purpose.CARE, at=CONSENTED_AT)
    return p


@pytest.fixture
def whatsapp_patient(patient):
    """`patient`, also on WhatsApp (same mobile) with an explicit WhatsApp opt-in for care."""
    contact_point_add(patient=patient, kind="whatsapp", value="+39 347 123 4567")
    consent_event(patient, "whatsapp", Purpose.CARE, at=CONSENTED_AT)
    return patient


@pytest.fixture
def reminder_template(db):
    """A care reminder in Italian and English, with an approved WhatsApp template for outside the window."""
    for lang, subject, body in (
        ("it", "Promemoria", "Ciao {{ first_name }}, appuntamento {{ when }}."),
        ("en", "Reminder", "Hi {{ first_name }}, appointment {{ when }}."),
    ):
        MessageTemplate.objects.create(name="reminder", purpose="care", language=lang, subject=subject, body=body,
                                       whatsapp_content_sid=CONTENT_SID, whatsapp_variables=["first_name", "when"])


REMINDER_CONTEXT = {"first_name": "Anna", "when": "lun 10:00"}
MONDAY_MORNING = dt.datetime(2030, 3, 4, 10, 0, tzinfo=dt.UTC)  # 11:00 in Rome: outside quiet hours


@pytest.fixture
def monday_morning(time_machine):
    """The clock stopped on a Monday morning, outside every quiet period; `.shift()` moves it on."""
    time_machine.move_to(MONDAY_MORNING, tick=False)
    return time_machine


def drain(max_rounds: int = 20) -> int:
    """Run dispatch batches until nothing due is left; returns how many claims were made."""
    total = 0
    for _ in range(max_rounds):
        claimed = dispatch_once()
        if not claimed:
            return total
        total += claimed
    raise AssertionError("dispatch kept finding due messages")


def process_inbound() -> int:
    """Process every stored, unprocessed webhook event (what the Celery task does after commit)."""
    ids = list(InboundEvent.objects.filter(processed_at__isnull=True).order_by("id").values_list("id", flat=True))
    for event_id in ids:
        inbound_event_process(event_id)
    return len(ids)


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


# --- Twilio webhooks, signed as Twilio signs them ------------------------------------------------

def post_twilio_inbound(client, fake, *, from_: str, body: str, to: str = CLINIC_NUMBER, sid: str | None = None):
    """POST an incoming SMS/WhatsApp (From 'whatsapp:+…' for WhatsApp) to /hooks/twilio/messages."""
    from tests.fakes.twilio_server import build_inbound_message

    params, signature = build_inbound_message(
        f"{PUBLIC_BASE_URL}/hooks/twilio/messages", fake.auth_token, from_=from_, body=body, message_sid=sid,
        to=f"whatsapp:{to}" if from_.startswith("whatsapp:") else to, account_sid=fake.account_sid,
    )
    return client.post("/hooks/twilio/messages", params, HTTP_X_TWILIO_SIGNATURE=signature)


def post_twilio_status(client, fake, sid: str, status: str, error_code: int | None = None):
    """Move a message at the fake to `status` and POST its signed status callback to our webhook."""
    from tests.fakes.twilio_server import sign_twilio_request

    message = fake.set_status(sid, status, error_code)
    params = fake.status_callback_params(message)
    url = message.status_callback
    assert url.startswith(PUBLIC_BASE_URL), url
    signature = sign_twilio_request(url, params, fake.auth_token)
    return client.post(url[len(PUBLIC_BASE_URL):], params, HTTP_X_TWILIO_SIGNATURE=signature)
