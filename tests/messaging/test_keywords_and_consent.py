"""Nothing is ever sent on a channel after STOP; START and HELP answer; YES from a subscribed patient is an
answer for the open flow. Keywords arrive as signed Twilio webhooks through the real URL config."""

import datetime as dt

import pytest

from consent.models import ConsentEvent, ConsentSource, Purpose
from consent.policy import may_contact
from messaging.hooks import register_flow
from messaging.models import Conversation, Message, MessageStatus
from messaging.services import conversations_for, message_send
from tests.messaging.spine import (
    PATIENT_MOBILE,
    REMINDER_CONTEXT,
    drain,
    post_twilio_inbound,
    process_inbound,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("monday_morning")]



def send_reminder(patient, key="reminder-1", **kwargs):
    return message_send(patient=patient, purpose="care", template="reminder", context=REMINDER_CONTEXT,
                        idempotency_key=key, **kwargs)


def reply(client, twilio, body, from_=PATIENT_MOBILE):
    response = post_twilio_inbound(client, twilio, from_=from_, body=body)
    assert response.status_code == 200
    process_inbound()


@pytest.mark.parametrize("word", ["STOP", "stop", " Stop. ", "UNSUBSCRIBE", "Quit", "STOPALL", "revoke"])
def test_nothing_is_sent_on_sms_after_stop(patient, twilio_accounts, reminder_template, twilio, client, smtp_server,
                                           word):
    # given a reminder queued for SMS
    msg = send_reminder(patient)
    assert msg.channel == "sms"

    # when the patient texts STOP before the worker runs, and then the worker runs
    reply(client, twilio, word)
    drain()

    # then the ledger says SMS is withdrawn, by keyword, for every purpose
    revoked = ConsentEvent.objects.filter(patient=patient, channel="sms", action="revoke")
    assert set(revoked.values_list("purpose", flat=True)) == set(Purpose.values)
    assert set(revoked.values_list("source", flat=True)) == {ConsentSource.KEYWORD}
    # and the reminder was not sent by SMS but fell back to email
    msg.refresh_from_db()
    assert (msg.channel, msg.status) == ("email", MessageStatus.SENT)
    assert {"channel": "sms", "failed": "consent_revoked"} in msg.routing
    assert len(smtp_server.messages) == 1
    # and the one SMS that went out is the opt-out confirmation, in the patient's language
    (sms,) = twilio.messages
    assert sms.to == PATIENT_MOBILE
    assert sms.body.startswith("Roma Centro: non riceverà più messaggi su questo canale.")
    assert Message.objects.get(compliance=True).template == "keyword_stop"


def test_message_send_after_stop_never_picks_sms(patient, twilio_accounts, reminder_template, twilio, client,
                                                 monday_morning):
    # given the patient replied STOP
    reply(client, twilio, "STOP")
    drain()
    sent_before = twilio.count(to=PATIENT_MOBILE)

    # when later reminders are sent, even asking for SMS explicitly
    monday_morning.shift(dt.timedelta(days=1))
    by_preference = send_reminder(patient, key="later-1")
    explicit = send_reminder(patient, key="later-2", channel="sms")
    drain()

    # then SMS is skipped as revoked and nothing more reaches the number
    assert by_preference.channel == "email"
    assert {"channel": "sms", "skipped": "revoked"} in by_preference.routing
    assert explicit.status == MessageStatus.FAILED
    assert explicit.routing == [{"channel": "sms", "skipped": "revoked"}]
    assert twilio.count(to=PATIENT_MOBILE) == sent_before == 1


def test_stop_on_whatsapp_leaves_sms_consent_alone(whatsapp_patient, twilio_accounts, reminder_template, twilio,
                                                   client):
    # given a patient on WhatsApp and SMS
    # when they send STOP on WhatsApp
    reply(client, twilio, "STOP", from_=f"whatsapp:{PATIENT_MOBILE}")

    # then WhatsApp is withdrawn and SMS is not
    assert not may_contact(whatsapp_patient, "whatsapp", Purpose.CARE)
    assert may_contact(whatsapp_patient, "sms", Purpose.CARE)
    assert send_reminder(whatsapp_patient).channel == "sms"


def test_start_after_stop_regrants_and_confirms(patient, twilio_accounts, reminder_template, twilio, client,
                                                monday_morning):
    # given the patient opted out by SMS
    reply(client, twilio, "STOP")
    drain()
    monday_morning.shift(dt.timedelta(minutes=5))

    # when they text START
    reply(client, twilio, "START")
    drain()

    # then care reminders by SMS are allowed again, recorded as a keyword grant, and confirmed
    assert may_contact(patient, "sms", Purpose.CARE)
    grant = ConsentEvent.objects.filter(patient=patient, channel="sms", action="grant", source=ConsentSource.KEYWORD)
    assert list(grant.values_list("purpose", flat=True)) == [Purpose.CARE]
    confirmation = Message.objects.get(template="keyword_start")
    assert confirmation.compliance and confirmation.status == MessageStatus.SENT
    assert twilio.messages[-1].body.startswith("Roma Centro: riceverà di nuovo i messaggi")
    # and the next reminder goes by SMS
    assert send_reminder(patient).channel == "sms"


def test_help_replies_with_the_help_template_and_changes_no_consent(patient, site_a, twilio_accounts, twilio, client):
    # given the site has a phone number to give
    site_a.phone = "+39 06 1234 5678"
    site_a.save()
    events_before = ConsentEvent.objects.count()

    # when the patient texts HELP
    reply(client, twilio, "help")
    drain()

    # then they get the help wording with the clinic's number, and consent is unchanged
    (sent,) = twilio.messages
    assert sent.to == PATIENT_MOBILE
    assert sent.body == ("Roma Centro: messaggi sugli appuntamenti. Per domande: +39 06 1234 5678. "
                         "Risponda STOP per non riceverli, START per riprendere.")
    assert ConsentEvent.objects.count() == events_before
    assert Message.objects.get(template="keyword_help").compliance


def test_yes_from_a_subscribed_patient_goes_to_the_open_flow_not_the_ledger(patient, twilio_accounts, twilio, client):
    # given a flow waiting for the patient's confirmation
    seen = []

    def confirm(conversation, message):
        seen.append((conversation.pk, message.body))
        return True

    register_flow("test_confirm_appointment", confirm)
    conv = conversations_for([patient])[patient.pk]
    Conversation.objects.filter(pk=conv.pk).update(flow="test_confirm_appointment")
    events_before = ConsentEvent.objects.count()

    # when the patient answers YES
    reply(client, twilio, "YES")
    drain()

    # then the flow got it; no consent event, no confirmation, nothing for staff
    assert seen == [(conv.pk, "YES")]
    assert ConsentEvent.objects.count() == events_before
    assert not Message.objects.filter(compliance=True).exists()
    assert twilio.messages == []
    conv.refresh_from_db()
    assert conv.needs_attention is False


def test_yes_after_stop_is_an_opt_in(patient, twilio_accounts, twilio, client, monday_morning):
    # given the patient opted out, and a flow is open
    register_flow("test_confirm_appointment", lambda conversation, message: True)
    reply(client, twilio, "STOP")
    conv = Conversation.objects.get(patient=patient)
    Conversation.objects.filter(pk=conv.pk).update(flow="test_confirm_appointment")
    monday_morning.shift(dt.timedelta(minutes=1))

    # when they answer YES
    reply(client, twilio, "YES")

    # then it re-subscribes them (Twilio's opt-in keyword)
    assert may_contact(patient, "sms", Purpose.CARE)
    assert Message.objects.filter(template="keyword_start").exists()


def test_stop_from_a_shared_phone_unsubscribes_everyone_on_it_and_confirms_once(patient, site_a, twilio_accounts,
                                                                               twilio, client):
    # given a parent and a child share the mobile, both consenting to SMS
    from patients.services import contact_point_add
    from tests.factories import PatientFactory, consent_event
    from tests.messaging.spine import CONSENTED_AT

    child = PatientFactory(home_site=site_a, language="it")
    contact_point_add(patient=child, kind="phone", value=PATIENT_MOBILE)
    consent_event(child, "sms", Purpose.CARE, at=CONSENTED_AT)

    # when the number texts STOP
    reply(client, twilio, "STOP")
    drain()

    # then nobody on that number gets SMS any more, and one confirmation went out
    assert not may_contact(patient, "sms", Purpose.CARE)
    assert not may_contact(child, "sms", Purpose.CARE)
    assert twilio.count(to=PATIENT_MOBILE) == 1
