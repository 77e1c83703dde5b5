"""Replies: who wrote (one conversation per patient across channels, shared phones, strangers), the
WhatsApp window, the flow/inbox hand-off, Patient 360 and the export, and the sandbox's reply path."""

import datetime as dt

import pytest

from channels_hub.inbound import inbound_event_process, sandbox_reply
from channels_hub.models import ChannelAccount, InboundEvent
from consent.models import Purpose
from consent.policy import may_contact
from messaging.hooks import register_fallback_handler, register_flow
from messaging.models import Conversation, Direction, Message, MessageStatus
from messaging.services import conversations_for, message_send
from patients.selectors import patient_export, patient_timeline
from patients.services import contact_point_add
from tests.factories import PatientFactory
from tests.fakes.twilio_server import load_twilio_fixture, sign_twilio_request
from tests.messaging.spine import (
    CLINIC_NUMBER,
    PATIENT_MOBILE,
    PUBLIC_BASE_URL,
    REMINDER_CONTEXT,
    drain,
    post_twilio_inbound,
    process_inbound,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2030, 3, 4, 10, 0, tzinfo=dt.UTC)
SERVICE_SID = "MG5e4f5e4f5e4f5e4f5e4f5e4f5e4f5e4f"


@pytest.fixture(autouse=True)
def frozen(time_machine):
    time_machine.move_to(NOW, tick=False)
    return time_machine


def receive(client, twilio, body, from_=PATIENT_MOBILE):
    assert post_twilio_inbound(client, twilio, from_=from_, body=body).status_code == 200
    assert process_inbound() == 1
    return Message.objects.filter(direction=Direction.INBOUND).latest("id")


def test_sms_from_a_known_number_lands_in_the_patients_conversation(patient, twilio_accounts, twilio, client):
    # given a patient with a mobile number on file
    # when they text the clinic
    msg = receive(client, twilio, "Posso spostare l'appuntamento?")

    # then it is their message, in their conversation, waiting for staff
    conv = Conversation.objects.get(patient=patient)
    assert (msg.patient, msg.conversation, msg.channel) == (patient, conv, "sms")
    assert (msg.status, msg.body, msg.from_address) == (MessageStatus.RECEIVED, "Posso spostare l'appuntamento?",
                                                        PATIENT_MOBILE)
    assert msg.account == twilio_accounts["sms"]
    assert conv.last_inbound_at == NOW
    assert conv.needs_attention is True
    assert conv.whatsapp_window_ends_at is None  # SMS does not open the WhatsApp window


def test_sms_and_whatsapp_from_the_same_patient_share_one_conversation(patient, twilio_accounts, twilio, client,
                                                                       frozen):
    # given a patient (only their phone is on file)
    # when they write by SMS and later by WhatsApp
    sms = receive(client, twilio, "Ciao")
    frozen.shift(dt.timedelta(minutes=10))
    whatsapp = receive(client, twilio, "Sono io, su WhatsApp", from_=f"whatsapp:{PATIENT_MOBILE}")

    # then both are in the patient's single conversation, each with its channel
    assert Conversation.objects.filter(patient=patient).count() == 1
    assert sms.conversation_id == whatsapp.conversation_id
    assert (sms.channel, whatsapp.channel) == ("sms", "whatsapp")
    assert whatsapp.patient == patient
    # and the WhatsApp message opened the 24-hour window
    conv = Conversation.objects.get(patient=patient)
    assert conv.whatsapp_window_ends_at == NOW + dt.timedelta(minutes=10, hours=24)


def test_whatsapp_reply_lets_the_next_message_go_as_free_text(whatsapp_patient, twilio_accounts, reminder_template,
                                                              twilio, client):
    # given the patient just wrote on WhatsApp
    receive(client, twilio, "Ciao", from_=f"whatsapp:{PATIENT_MOBILE}")

    # when a reminder goes out
    message_send(patient=whatsapp_patient, purpose="care", template="reminder", context=REMINDER_CONTEXT,
                 idempotency_key="r1")
    drain()

    # then it is WhatsApp free text, not the template
    (created,) = twilio.messages
    assert created.to == f"whatsapp:{PATIENT_MOBILE}"
    assert created.body == "Ciao Anna, appuntamento lun 10:00."


def test_events_processed_out_of_order_never_shorten_the_whatsapp_window(patient, twilio_accounts, twilio, client,
                                                                        frozen):
    # given two WhatsApp messages an hour apart, whose processing ran in the opposite order (a retried task)
    for body in ("primo", "secondo"):
        post_twilio_inbound(client, twilio, from_=f"whatsapp:{PATIENT_MOBILE}", body=body)
        frozen.shift(dt.timedelta(hours=1))
    first, second = InboundEvent.objects.order_by("id")
    inbound_event_process(second.pk)
    inbound_event_process(first.pk)

    # then the window runs 24 hours from the later message, and so does the last inbound time
    conv = Conversation.objects.get(patient=patient)
    assert conv.whatsapp_window_ends_at == NOW + dt.timedelta(hours=25)
    assert conv.last_inbound_at == NOW + dt.timedelta(hours=1)


def test_shared_phone_opens_a_conversation_asking_which_patient(patient, site_a, twilio_accounts, twilio, client):
    # given a parent and a child share the mobile number
    child = PatientFactory(home_site=site_a, given_name="Luca")
    contact_point_add(patient=child, kind="phone", value=PATIENT_MOBILE)

    # when that number writes
    msg = receive(client, twilio, "Ciao, è per mio figlio")

    # then the conversation is not attributed but lists both as candidates, for staff
    conv = msg.conversation
    assert msg.patient is None and conv.patient is None
    assert conv.address == PATIENT_MOBILE
    assert set(conv.candidate_patients.all()) == {patient, child}
    assert conv.needs_attention is True


def test_unknown_sender_gets_an_unidentified_conversation_keyed_by_address(site_a, twilio_accounts, twilio, client,
                                                                            frozen):
    # given nobody has this number
    stranger = "+393409998877"

    # when it writes twice
    first = receive(client, twilio, "Buongiorno", from_=stranger)
    frozen.shift(dt.timedelta(minutes=1))
    second = receive(client, twilio, "C'è qualcuno?", from_=stranger)

    # then both land in one unidentified conversation for that address, at the account's site
    assert first.conversation_id == second.conversation_id
    conv = first.conversation
    assert (conv.patient, conv.address, conv.site) == (None, stranger, site_a)
    assert conv.needs_attention is True
    assert first.patient is None


def test_message_no_flow_takes_goes_to_the_staff_inbox(patient, twilio_accounts, twilio, client):
    # given a flow that only understands numbers
    register_flow("test_score", lambda conversation, message: message.body.strip().isdigit())
    conv = conversations_for([patient])[patient.pk]
    Conversation.objects.filter(pk=conv.pk).update(flow="test_score")

    # when the patient writes something else
    receive(client, twilio, "Non ho capito")

    # then staff must look at it
    conv.refresh_from_db()
    assert conv.needs_attention is True


def test_flow_takes_the_answer_it_understands(patient, twilio_accounts, twilio, client):
    register_flow("test_score", lambda conversation, message: message.body.strip().isdigit())
    conv = conversations_for([patient])[patient.pk]
    Conversation.objects.filter(pk=conv.pk).update(flow="test_score")

    receive(client, twilio, " 9 ")

    conv.refresh_from_db()
    assert conv.needs_attention is False


def test_expired_flow_does_not_take_the_answer(patient, twilio_accounts, twilio, client):
    taken = []
    register_flow("test_expired", lambda conversation, message: taken.append(message.body) or True)
    conv = conversations_for([patient])[patient.pk]
    Conversation.objects.filter(pk=conv.pk).update(flow="test_expired", flow_expires_at=NOW - dt.timedelta(hours=1))

    receive(client, twilio, "5")

    conv.refresh_from_db()
    assert taken == []
    assert conv.needs_attention is True


def test_fallback_handler_answers_before_the_inbox(patient, twilio_accounts, twilio, client):
    # given an FAQ bot that knows one question
    register_fallback_handler(lambda conversation, message: message.body == "orari test-faq?")

    # when the patient asks it
    receive(client, twilio, "orari test-faq?")

    # then staff are not bothered
    assert Conversation.objects.get(patient=patient).needs_attention is False


def test_inbound_through_a_messaging_service_number_finds_the_account(patient, site_a, twilio, client):
    # given the site's SMS account is a Messaging Service (Twilio picks the number, here +15017122661)
    account = ChannelAccount.objects.create(site=site_a, channel="sms", provider="twilio", sender="",
                                            messaging_service_sid=SERVICE_SID)
    contact_point_add(patient=patient, kind="phone", value="+393331234567")

    # when a patient texts that number (Twilio's own payload)
    params = load_twilio_fixture("inbound_sms")
    url = f"{PUBLIC_BASE_URL}/hooks/twilio/messages"
    response = client.post("/hooks/twilio/messages", params,
                           HTTP_X_TWILIO_SIGNATURE=sign_twilio_request(url, params, twilio.auth_token))
    assert response.status_code == 200
    process_inbound()

    # then it is processed and attributed
    event = InboundEvent.objects.get()
    assert event.processed_at is not None and event.error == ""
    msg = Message.objects.get(direction=Direction.INBOUND)
    assert (msg.patient, msg.account) == (patient, account)


def test_patient_360_timeline_and_export_include_messages(patient, twilio_accounts, reminder_template, twilio, client,
                                                          frozen):
    # given a reminder went out and the patient answered
    out = message_send(patient=patient, purpose="care", template="reminder", context=REMINDER_CONTEXT,
                       idempotency_key="r1")
    drain()
    frozen.shift(dt.timedelta(minutes=5))
    receive(client, twilio, "Grazie")

    # when staff open the timeline and the patient exports their data
    entries = [e for e in patient_timeline(patient) if e.kind == "message"]
    export = patient_export(patient)

    # then both messages are there, newest first, with their status
    assert [e.extra["message_id"] for e in entries] == [Message.objects.get(direction="in").pk, out.pk]
    assert entries[1].extra["status"] == MessageStatus.SENT
    assert entries[1].detail == "Ciao Anna, appuntamento lun 10:00."
    assert [(m["direction"], m["channel"], m["body"]) for m in export["messages"]] == [
        ("out", "sms", "Ciao Anna, appuntamento lun 10:00."), ("in", "sms", "Grazie")]


# --- the sandbox -----------------------------------------------------------------------------

def test_sandbox_reply_goes_through_the_same_inbound_path(patient, sandbox_accounts,
                                                         django_capture_on_commit_callbacks):
    # given the console's patient-device view
    # when staff reply as the patient
    with django_capture_on_commit_callbacks() as callbacks:
        event = sandbox_reply(channel="sms", from_address=PATIENT_MOBILE, to_address=CLINIC_NUMBER, body="Va bene")
    assert len(callbacks) == 1  # processing is queued after commit, like a webhook
    inbound_event_process(event.pk)

    # then it is the patient's message in their conversation, like a real SMS
    msg = Message.objects.get(direction=Direction.INBOUND)
    assert (msg.patient, msg.channel, msg.body, msg.provider) == (patient, "sms", "Va bene", "sandbox")
    assert msg.conversation == Conversation.objects.get(patient=patient)
    event.refresh_from_db()
    assert event.processed_at is not None


def test_sandbox_stop_revokes_consent_and_confirms_on_the_device(patient, sandbox_accounts):
    from channels_hub.models import SandboxMessage

    event = sandbox_reply(channel="sms", from_address=PATIENT_MOBILE, to_address=CLINIC_NUMBER, body="STOP")
    inbound_event_process(event.pk)
    inbound_event_process(event.pk)  # a retried task changes nothing
    drain()

    assert not may_contact(patient, "sms", Purpose.CARE)
    (shown,) = SandboxMessage.objects.filter(to=PATIENT_MOBILE)
    assert shown.body.startswith("Roma Centro: non riceverà più messaggi")
    assert Message.objects.filter(direction=Direction.INBOUND).count() == 1
