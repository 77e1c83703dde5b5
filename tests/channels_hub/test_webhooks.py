"""Twilio webhooks through the real URL config: X-Twilio-Signature over the public URL (403 otherwise),
store-then-process, replays harmless, status callbacks only move a message forward."""

import datetime as dt

import pytest
from twilio.request_validator import RequestValidator

from channels_hub.models import InboundEvent, InboundKind
from messaging.dispatch import claim, deliver
from messaging.models import AttemptOutcome, Message, MessageAttempt, MessageStatus
from messaging.services import message_send
from patients.models import ContactPoint
from tests.fakes.twilio_server import load_twilio_fixture
from tests.messaging.spine import (
    CLINIC_NUMBER,
    PATIENT_MOBILE,
    PUBLIC_BASE_URL,
    REMINDER_CONTEXT,
    drain,
    post_twilio_inbound,
    post_twilio_status,
    process_inbound,
)

pytestmark = pytest.mark.django_db

MESSAGES_PATH = "/hooks/twilio/messages"
STATUS_PATH = "/hooks/twilio/status"
NOW = dt.datetime(2030, 3, 4, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def frozen(time_machine):
    time_machine.move_to(NOW, tick=False)


def signature(url, params, token):
    return RequestValidator(token).compute_signature(url, params)


def inbound_params(**overrides):
    return load_twilio_fixture("inbound_sms", From=PATIENT_MOBILE, To=CLINIC_NUMBER, **overrides)


# --- signatures --------------------------------------------------------------------------------

def test_valid_signature_is_accepted_and_the_raw_event_stored(twilio, client):
    # given Twilio's form fields signed for our public URL
    params = inbound_params()
    sig = signature(f"{PUBLIC_BASE_URL}{MESSAGES_PATH}", params, twilio.auth_token)

    # when Twilio posts them
    response = client.post(MESSAGES_PATH, params, HTTP_X_TWILIO_SIGNATURE=sig)

    # then we answer 200 with empty TwiML, having stored the event exactly as received (not yet processed)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert b"<Response></Response>" in response.content
    event = InboundEvent.objects.get()
    assert (event.provider, event.kind, event.external_id, event.status) == (
        "twilio", InboundKind.MESSAGE, params["MessageSid"], "received")
    assert event.payload == params
    assert event.processed_at is None


def test_forged_signature_is_refused(twilio, client):
    params = inbound_params()
    forged = signature(f"{PUBLIC_BASE_URL}{MESSAGES_PATH}", params, "0" * 32)

    response = client.post(MESSAGES_PATH, params, HTTP_X_TWILIO_SIGNATURE=forged)

    assert response.status_code == 403
    assert not InboundEvent.objects.exists()


def test_missing_signature_is_refused(twilio, client):
    response = client.post(MESSAGES_PATH, inbound_params())

    assert response.status_code == 403
    assert not InboundEvent.objects.exists()


def test_signature_for_another_url_is_refused(twilio, client):
    # given a signature Twilio made for the status webhook
    params = inbound_params()
    sig = signature(f"{PUBLIC_BASE_URL}{STATUS_PATH}", params, twilio.auth_token)

    # when it is replayed against the messages webhook
    response = client.post(MESSAGES_PATH, params, HTTP_X_TWILIO_SIGNATURE=sig)

    assert response.status_code == 403
    assert not InboundEvent.objects.exists()


@pytest.mark.parametrize("tamper", ["add", "change"])
def test_parameters_changed_after_signing_are_refused(twilio, client, tamper):
    # given a correctly signed message
    params = inbound_params()
    sig = signature(f"{PUBLIC_BASE_URL}{MESSAGES_PATH}", params, twilio.auth_token)

    # when someone adds or changes a field on the way
    if tamper == "add":
        params["OptOutType"] = "STOP"
    else:
        params["Body"] = "STOP"
    response = client.post(MESSAGES_PATH, params, HTTP_X_TWILIO_SIGNATURE=sig)

    assert response.status_code == 403
    assert not InboundEvent.objects.exists()


def test_unknown_account_sid_is_refused(twilio, client):
    params = inbound_params(AccountSid="AC" + "0" * 32)
    sig = signature(f"{PUBLIC_BASE_URL}{MESSAGES_PATH}", params, twilio.auth_token)

    assert client.post(MESSAGES_PATH, params, HTTP_X_TWILIO_SIGNATURE=sig).status_code == 403


def test_behind_a_proxy_the_public_url_is_what_counts(twilio, client, settings):
    # given the request reaches Django as http://testserver/... but Twilio called (and signed) the public URL
    settings.PUBLIC_BASE_URL = "https://clinic.example.org"
    params = inbound_params()
    public = signature("https://clinic.example.org/hooks/twilio/messages", params, twilio.auth_token)
    internal = signature(f"http://testserver{MESSAGES_PATH}", params, twilio.auth_token)

    # then the signature over the public URL is valid and one over the internal URL is not
    assert client.post(MESSAGES_PATH, params, HTTP_X_TWILIO_SIGNATURE=internal).status_code == 403
    assert client.post(MESSAGES_PATH, params, HTTP_X_TWILIO_SIGNATURE=public).status_code == 200
    assert InboundEvent.objects.count() == 1


def test_status_callback_signature_covers_the_query_string(twilio, client):
    params = load_twilio_fixture("status_delivered")
    good = signature(f"{PUBLIC_BASE_URL}{STATUS_PATH}?ref=41", params, twilio.auth_token)

    assert client.post(f"{STATUS_PATH}?ref=42", params, HTTP_X_TWILIO_SIGNATURE=good).status_code == 403
    assert client.post(f"{STATUS_PATH}?ref=41", params, HTTP_X_TWILIO_SIGNATURE=good).status_code == 200
    assert InboundEvent.objects.get().payload["_ref"] == "41"


def test_webhooks_only_accept_post(twilio, client):
    assert client.get(MESSAGES_PATH).status_code == 405
    assert client.get(STATUS_PATH).status_code == 405


# --- replays --------------------------------------------------------------------------------------

def test_same_inbound_message_twice_is_one_event_and_one_message(patient, twilio_accounts, twilio, client):
    # given Twilio retries the same incoming message (same MessageSid)
    for _ in range(2):
        response = post_twilio_inbound(client, twilio, from_=PATIENT_MOBILE, body="Ciao", sid="SM" + "1" * 32)
        assert response.status_code == 200

    # when events are processed (and a processing task runs twice)
    process_inbound()
    from channels_hub.inbound import inbound_event_process

    inbound_event_process(InboundEvent.objects.get().pk)

    # then there is one event and one message
    assert InboundEvent.objects.count() == 1
    assert Message.objects.filter(direction="in").count() == 1


def test_same_stop_twice_sends_one_confirmation(patient, twilio_accounts, twilio, client):
    for _ in range(2):
        post_twilio_inbound(client, twilio, from_=PATIENT_MOBILE, body="STOP", sid="SM" + "2" * 32)
    process_inbound()
    drain()

    assert twilio.count(to=PATIENT_MOBILE) == 1


@pytest.fixture
def sent_sms(patient, twilio_accounts, reminder_template, twilio):
    """A reminder Twilio accepted, with a StatusCallback to our public URL."""
    msg = message_send(patient=patient, purpose="care", template="reminder", context=REMINDER_CONTEXT,
                       idempotency_key="r1")
    drain()
    msg.refresh_from_db()
    assert msg.status == MessageStatus.SENT
    return msg


def process_status(client, twilio, msg, status, error_code=None):
    assert post_twilio_status(client, twilio, msg.provider_id, status, error_code).status_code == 200
    process_inbound()
    msg.refresh_from_db()
    return msg


def test_same_status_callback_twice_is_one_event(sent_sms, twilio, client):
    process_status(client, twilio, sent_sms, "delivered")
    process_status(client, twilio, sent_sms, "delivered")

    assert InboundEvent.objects.filter(kind=InboundKind.STATUS).count() == 1
    assert sent_sms.status == MessageStatus.DELIVERED
    assert sent_sms.delivered_at == NOW


def test_out_of_order_callbacks_leave_it_delivered(sent_sms, twilio, client):
    # when "delivered" arrives before "sent"
    process_status(client, twilio, sent_sms, "delivered")
    msg = process_status(client, twilio, sent_sms, "sent")

    # then it stays delivered
    assert msg.status == MessageStatus.DELIVERED
    assert InboundEvent.objects.filter(kind=InboundKind.STATUS).count() == 2


def test_read_after_delivered_moves_to_read(sent_sms, twilio, client):
    process_status(client, twilio, sent_sms, "delivered")
    msg = process_status(client, twilio, sent_sms, "read")

    assert msg.status == MessageStatus.READ
    assert msg.read_at == NOW


def test_failed_30005_marks_the_contact_point_invalid(sent_sms, patient, twilio, client):
    # when the carrier reports an unknown destination handset
    msg = process_status(client, twilio, sent_sms, "failed", error_code=30005)

    # then the number is kept, marked invalid, and the message falls back to the next allowed channel
    assert (msg.status, msg.channel, msg.error_code) == (MessageStatus.QUEUED, "email", "30005")
    assert {"channel": "sms", "failed": "30005"} in msg.routing
    assert msg.provider_id is None  # the SMS sid stays on its attempt
    cp = ContactPoint.objects.get(patient=patient, kind="phone")
    assert cp.is_valid is False
    assert "30005" in cp.invalid_reason


def test_undelivered_30003_keeps_the_number_valid(sent_sms, patient, twilio, client):
    # an unreachable handset (switched off) says nothing about the number itself
    msg = process_status(client, twilio, sent_sms, "undelivered", error_code=30003)

    assert (msg.status, msg.channel) == (MessageStatus.QUEUED, "email")  # tried again on email
    assert ContactPoint.objects.get(patient=patient, kind="phone").is_valid is True


def test_receipt_before_the_worker_recorded_the_sid_is_matched_by_reference(sent_sms, twilio, client):
    # given the worker has not yet stored Twilio's sid when the first receipt arrives
    sid = sent_sms.provider_id
    Message.objects.filter(pk=sent_sms.pk).update(provider_id=None, status=MessageStatus.SENDING)
    MessageAttempt.objects.filter(message=sent_sms).update(provider_id="", outcome=AttemptOutcome.STARTED)

    # when the callback comes (to ...?ref=<our id>)
    assert post_twilio_status(client, twilio, sid, "delivered").status_code == 200
    process_inbound()

    # then the message is found by our reference and moved on
    sent_sms.refresh_from_db()
    assert (sent_sms.provider_id, sent_sms.status) == (sid, MessageStatus.DELIVERED)


def test_late_receipt_for_a_superseded_send_is_ignored(sent_sms, patient, twilio, client):
    # given the SMS failed after acceptance and the message fell back to email
    old_sid = sent_sms.provider_id
    msg = process_status(client, twilio, sent_sms, "undelivered", error_code=30003)
    assert (msg.status, msg.channel) == (MessageStatus.QUEUED, "email")
    # when a late 'delivered' for the old SMS sid arrives
    post_twilio_status(client, twilio, old_sid, "delivered")
    from channels_hub.inbound import inbound_event_process
    from channels_hub.models import InboundEvent

    for event in InboundEvent.objects.filter(processed_at__isnull=True):
        inbound_event_process(event.pk)
    # then the email still waits to be sent: the old receipt cannot mark it delivered
    msg.refresh_from_db()
    assert (msg.status, msg.channel) == (MessageStatus.QUEUED, "email")


def test_late_receipt_for_the_failed_send_cannot_pass_for_the_fallback_in_flight(sent_sms, patient, twilio, client):
    # given the SMS was reported failed and the message fell back to email, which a worker has claimed
    old_sid = sent_sms.provider_id
    msg = process_status(client, twilio, sent_sms, "undelivered", error_code=30003)
    assert claim(10) == [msg.pk]

    # when a late 'sent' receipt for the old SMS arrives while the email is in flight (by reference)
    post_twilio_status(client, twilio, old_sid, "sent")
    process_inbound()

    # then the email is still the worker's to send, and is sent
    msg.refresh_from_db()
    assert (msg.status, msg.provider_id) == (MessageStatus.SENDING, None)
    deliver([msg.pk])
    msg.refresh_from_db()
    assert (msg.status, msg.channel) == (MessageStatus.SENT, "email")
    # and the SMS attempt shows how it ended
    sms = msg.attempts.get(channel="sms")
    assert (sms.outcome, sms.error_code) == (AttemptOutcome.FAILED, "30003")


def test_a_stop_whose_processing_failed_is_applied_by_the_relay_after_a_pause(patient, twilio_accounts, twilio,
                                                                                client, monkeypatch, time_machine):
    from channels_hub import inbound
    from consent.policy import may_contact

    # given a STOP whose first processing hit a fault
    post_twilio_inbound(client, twilio, from_=PATIENT_MOBILE, body="STOP", sid="SM" + "7" * 32)
    real_handler = inbound._handlers["message"]
    monkeypatch.setitem(inbound._handlers, "message", lambda parsed: (_ for _ in ()).throw(RuntimeError("db hiccup")))
    process_inbound()
    event = InboundEvent.objects.get()
    assert (event.processed_at, event.failures, event.error) == (None, 1, "RuntimeError: db hiccup")

    # then the relay leaves it alone during the pause, and queues it again after
    assert inbound.inbound_pending(dt.timedelta(seconds=60)) == []
    time_machine.shift(dt.timedelta(seconds=inbound.RETRY_BASE_SECONDS + 1))
    assert inbound.inbound_pending(dt.timedelta(seconds=60)) == [event.pk]

    # and once the fault is gone the STOP takes effect
    monkeypatch.setitem(inbound._handlers, "message", real_handler)
    inbound.inbound_event_process(event.pk)
    event.refresh_from_db()
    assert event.processed_at is not None and event.error == ""
    assert not may_contact(patient, "sms", "care")


def test_webhook_answers_200_and_keeps_the_event_when_the_broker_is_down(patient, twilio_accounts, twilio, client,
                                                                           monkeypatch, django_capture_on_commit_callbacks):
    from channels_hub.tasks import process_inbound_event

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(process_inbound_event, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_twilio_inbound(client, twilio, from_=PATIENT_MOBILE, body="Ciao", sid="SM" + "8" * 32)

    assert response.status_code == 200
    assert InboundEvent.objects.filter(processed_at__isnull=True).count() == 1


def test_the_relay_requeues_inbound_events_even_when_reconciling_fails(patient, twilio_accounts, twilio, client,
                                                                         monkeypatch, time_machine):
    from channels_hub.tasks import process_inbound_event
    from messaging import dispatch, tasks

    # given an inbound STOP whose task was lost, and a reconcile step that fails this time
    post_twilio_inbound(client, twilio, from_=PATIENT_MOBILE, body="STOP", sid="SM" + "9" * 32)
    time_machine.shift(dt.timedelta(seconds=61))

    def broken():
        raise RuntimeError("misconfigured account")

    monkeypatch.setattr(dispatch, "reconcile", broken)
    queued = []
    monkeypatch.setattr(process_inbound_event, "delay", queued.append)

    # when the relay runs, then the event is queued again all the same
    tasks.relay()
    assert queued == [InboundEvent.objects.get().pk]
