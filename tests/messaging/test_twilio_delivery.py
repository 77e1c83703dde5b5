"""Outbound delivery through the real twilio client against the local fake Twilio API (and a real SMTP
server for email fallback): request shape, every error path, unknown outcomes and reconciliation."""

import datetime as dt
import json

import pytest
from django.utils import timezone

from channels_hub.models import ChannelAccount
from channels_hub.providers import provider_for
from consent.models import ConsentEvent, ConsentSource, Purpose
from consent.policy import may_contact
from consent.services import consent_revoke_channel
from messaging.dispatch import claim, claim_lease_seconds, outbound_for, reconcile
from messaging.models import AttemptOutcome, Conversation, Message, MessageAttempt, MessageStatus
from messaging.services import conversations_for, message_send
from patients.models import ContactPoint
from tests.factories import PatientFactory
from tests.messaging.spine import (
    CLINIC_NUMBER,
    CONTENT_SID,
    MONDAY_MORNING,
    PATIENT_EMAIL,
    PATIENT_MOBILE,
    PUBLIC_BASE_URL,
    REMINDER_CONTEXT,
    drain,
    post_twilio_status,
    process_inbound,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("monday_morning")]

SERVICE_SID = "MG" + "5e4f" * 8
WHATSAPP_MOBILE = f"whatsapp:{PATIENT_MOBILE}"


def send_reminder(patient, key="reminder-1", **kwargs):
    return message_send(patient=patient, purpose="care", template="reminder", context=REMINDER_CONTEXT,
                        idempotency_key=key, **kwargs)


def creates(fake):
    """The create (POST Messages.json) requests the fake received."""
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/Messages.json")]


def open_whatsapp_window(patient, hours=2):
    """As if the patient had written on WhatsApp (24 - hours) hours ago."""
    conv = conversations_for([patient])[patient.pk]
    Conversation.objects.filter(pk=conv.pk).update(whatsapp_window_ends_at=timezone.now() + dt.timedelta(hours=hours))


# --- request shape ------------------------------------------------------------------------------

def test_sms_is_posted_with_from_to_body_status_callback_and_basic_auth(patient, twilio_accounts, reminder_template,
                                                                        twilio):
    # given a patient reachable by SMS
    msg = send_reminder(patient)

    # when the worker delivers it
    assert drain() == 1

    # then Twilio got exactly one well-formed create, and the message records Twilio's sid as sent
    (request,) = twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    assert request.auth == (twilio.account_sid, twilio.auth_token)
    assert request.form == {
        "To": PATIENT_MOBILE, "From": CLINIC_NUMBER, "Body": "Ciao Anna, appuntamento lun 10:00.",
        "StatusCallback": f"{PUBLIC_BASE_URL}/hooks/twilio/status?ref={msg.pk}",
    }
    msg.refresh_from_db()
    assert msg.status == MessageStatus.SENT
    assert msg.provider_id == request.sid
    assert msg.sent_at == MONDAY_MORNING
    (attempt,) = msg.attempts.all()
    assert (attempt.outcome, attempt.provider_id, attempt.channel) == (AttemptOutcome.ACCEPTED, request.sid, "sms")


def test_accepted_message_is_not_claimed_again(patient, twilio_accounts, reminder_template, twilio):
    # given a message Twilio accepted (its API answers status "queued")
    send_reminder(patient)
    drain()

    # when workers keep running
    assert drain() == 0

    # then it was created once at Twilio
    assert twilio.count(to=PATIENT_MOBILE) == 1


def test_whatsapp_inside_the_window_sends_free_text_with_whatsapp_addresses(whatsapp_patient, twilio_accounts,
                                                                            reminder_template, twilio):
    # given the patient wrote on WhatsApp an hour ago (the 24-hour window is open)
    open_whatsapp_window(whatsapp_patient)
    msg = send_reminder(whatsapp_patient)

    # when it is delivered
    drain()

    # then it went as free text between whatsapp: addresses
    assert msg.channel == "whatsapp"
    (request,) = creates(twilio)
    assert request.form["To"] == WHATSAPP_MOBILE
    assert request.form["From"] == f"whatsapp:{CLINIC_NUMBER}"
    assert request.form["Body"] == "Ciao Anna, appuntamento lun 10:00."
    assert "ContentSid" not in request.form


def test_whatsapp_outside_the_window_sends_the_approved_template_with_json_variables(
        whatsapp_patient, twilio_accounts, reminder_template, twilio):
    # given no WhatsApp message from the patient in the last 24 hours
    msg = send_reminder(whatsapp_patient)

    # when it is delivered
    drain()

    # then Twilio got the ContentSid and the variables as JSON, and no free text
    assert msg.channel == "whatsapp"
    (request,) = creates(twilio)
    assert request.form["To"] == WHATSAPP_MOBILE
    assert request.form["ContentSid"] == CONTENT_SID
    assert json.loads(request.form["ContentVariables"]) == {"1": "Anna", "2": "lun 10:00"}
    assert "Body" not in request.form
    msg.refresh_from_db()
    assert msg.status == MessageStatus.SENT
    assert msg.attempts.get().mode == "template"


def test_a_none_value_for_a_whatsapp_template_variable_is_refused_not_sent_as_the_word_none(
        whatsapp_patient, twilio_accounts, reminder_template, twilio):
    from django.core.exceptions import ValidationError

    from messaging.models import MessageTemplate

    # the approved WhatsApp template carries a value the free-text wording leaves out
    MessageTemplate.objects.create(name="short", purpose="care", language="en", body="Hi {{ first_name }}.",
                                   whatsapp_content_sid=CONTENT_SID, whatsapp_variables=["first_name", "when"])
    with pytest.raises(ValidationError) as exc:
        message_send(patient=whatsapp_patient, purpose="care", template="short",
                     context={"first_name": "Anna", "when": None}, idempotency_key="none-value")

    assert list(exc.value.message_dict) == ["context.when"]
    assert not Message.objects.exists()


def test_whatsapp_outside_the_window_without_a_template_is_not_sent_as_free_text(
        whatsapp_patient, twilio_accounts, reminder_template, twilio):
    # given the wording has no approved WhatsApp template
    from messaging.models import MessageTemplate

    MessageTemplate.objects.filter(name="reminder").update(whatsapp_content_sid="", whatsapp_variables=[])

    # when the reminder is sent with the window closed
    msg = send_reminder(whatsapp_patient)
    drain()

    # then WhatsApp is skipped for that reason and SMS carries it
    assert {"channel": "whatsapp", "skipped": "outside_session_window"} in msg.routing
    assert msg.channel == "sms"
    assert [r.form["To"] for r in creates(twilio)] == [PATIENT_MOBILE]


def test_account_with_a_messaging_service_sends_its_sid_instead_of_from(patient, twilio_accounts, reminder_template,
                                                                        twilio):
    # given the SMS account sends through a Messaging Service (no fixed number)
    ChannelAccount.objects.filter(pk=twilio_accounts["sms"].pk).update(sender="", messaging_service_sid=SERVICE_SID)

    # when a reminder goes out
    send_reminder(patient)
    drain()

    # then Twilio picks the sender from the service
    (request,) = creates(twilio)
    assert request.form["MessagingServiceSid"] == SERVICE_SID
    assert "From" not in request.form
    assert request.form["To"] == PATIENT_MOBILE


# --- transient errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("code", [20429, 20500, 20503])
def test_transient_error_requeues_with_backoff_and_then_sends_once(patient, twilio_accounts, reminder_template,
                                                                    twilio, settings, code, monday_morning):
    # given Twilio answers 429 / 500 / 503 once
    settings.SEND_RETRY_BASE_SECONDS = 20
    twilio.script(PATIENT_MOBILE, code=code, times=1)
    msg = send_reminder(patient)

    # when the worker tries
    drain()

    # then the message waits in the queue for a retry within the jittered first backoff
    msg.refresh_from_db()
    assert msg.status == MessageStatus.QUEUED
    assert msg.error_code == str(code)
    assert MONDAY_MORNING + dt.timedelta(seconds=10) <= msg.next_attempt_at <= MONDAY_MORNING + dt.timedelta(seconds=20)
    (attempt,) = msg.attempts.all()
    assert (attempt.outcome, attempt.error_code) == (AttemptOutcome.RETRY, str(code))
    assert twilio.count() == 0
    assert drain() == 0  # not before its time

    # when the backoff has passed
    monday_morning.shift(dt.timedelta(seconds=21))
    drain()

    # then it is sent, once
    msg.refresh_from_db()
    assert msg.status == MessageStatus.SENT
    assert twilio.count(to=PATIENT_MOBILE) == 1
    assert [a.outcome for a in msg.attempts.order_by("number")] == [AttemptOutcome.RETRY, AttemptOutcome.ACCEPTED]


def test_backoff_doubles_per_attempt_and_is_jittered(patient, site_a, twilio_accounts, reminder_template, twilio,
                                                     settings, monday_morning):
    # given Twilio is down (503) for everyone and five patients have a reminder due
    settings.SEND_RETRY_BASE_SECONDS = 100
    twilio.script(code=20503)
    others = []
    for i in range(4):
        other = PatientFactory(home_site=site_a, language="it", preferred_channels=["sms"])
        from patients.services import contact_point_add
        from tests.factories import consent_event

        contact_point_add(patient=other, kind="phone", value=f"+39 347 000 00{i:02d}")
        consent_event(other, "sms", Purpose.CARE)
        others.append(other)
    msgs = [send_reminder(p, key=f"r-{p.pk}") for p in [patient, *others]]

    # when the first attempt fails
    drain()

    # then each waits between half and the full base delay, not all the same
    first = [Message.objects.get(pk=m.pk).next_attempt_at - MONDAY_MORNING for m in msgs]
    assert all(dt.timedelta(seconds=50) <= d <= dt.timedelta(seconds=100) for d in first)
    assert len(set(first)) > 1

    # when the second attempt fails too
    monday_morning.shift(dt.timedelta(seconds=101))
    second_try = timezone.now()
    drain()

    # then the delay doubled
    second = [Message.objects.get(pk=m.pk).next_attempt_at - second_try for m in msgs]
    assert all(dt.timedelta(seconds=100) <= d <= dt.timedelta(seconds=200) for d in second)
    assert all(Message.objects.get(pk=m.pk).attempt_count == 2 for m in msgs)


def test_connection_refused_is_retried_not_unknown(patient, twilio_accounts, reminder_template, settings):
    # given nothing listens where the Twilio API should be
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{port}"
    msg = send_reminder(patient)

    # when the worker tries
    drain()

    # then nothing can have been sent: it is a plain retry
    msg.refresh_from_db()
    assert msg.status == MessageStatus.QUEUED
    assert msg.attempts.get().outcome == AttemptOutcome.RETRY
    assert msg.next_attempt_at > timezone.now()


def _retry_until_settled(monday_morning, msg, rounds=20):
    for _ in range(rounds):
        drain()
        msg.refresh_from_db()
        if msg.status != MessageStatus.QUEUED or msg.channel != "sms":
            return msg
        monday_morning.shift(dt.timedelta(hours=1))
    raise AssertionError("still retrying")


def test_after_max_attempts_a_transient_failure_falls_back_to_email(patient, twilio_accounts, reminder_template,
                                                                    twilio, settings, monday_morning, smtp_server):
    # given Twilio keeps answering 503 for this number
    settings.SEND_MAX_ATTEMPTS = 3
    twilio.script(PATIENT_MOBILE, code=20503)
    msg = send_reminder(patient)

    # when the worker has tried as often as allowed
    msg = _retry_until_settled(monday_morning, msg)
    drain()

    # then the reminder went by email instead, and every SMS try is on record
    msg.refresh_from_db()
    assert msg.channel == "email"
    assert msg.status == MessageStatus.SENT
    sms_attempts = msg.attempts.filter(channel="sms")
    assert sms_attempts.count() == 3
    assert set(sms_attempts.values_list("outcome", flat=True)) == {AttemptOutcome.RETRY}
    assert {"channel": "sms", "failed": "gave_up_20503"} in msg.routing
    assert [m.rcpt_tos for m in smtp_server.messages] == [[PATIENT_EMAIL]]
    assert twilio.count() == 0


def test_after_max_attempts_with_no_other_channel_the_message_fails_with_the_reason(
        patient, twilio_accounts, reminder_template, twilio, settings, monday_morning):
    # given SMS is the patient's only channel and Twilio keeps answering 503
    settings.SEND_MAX_ATTEMPTS = 2
    patient.preferred_channels = ["sms"]
    patient.save()
    twilio.script(PATIENT_MOBILE, code=20503)
    msg = send_reminder(patient)

    # when the worker has tried as often as allowed
    msg = _retry_until_settled(monday_morning, msg)

    # then it failed, saying why
    assert msg.status == MessageStatus.FAILED
    assert msg.error_code == "20503"
    assert msg.failed_at is not None
    assert msg.attempts.count() == 2
    assert twilio.count() == 0


def test_fallback_channel_gets_its_own_retries(patient, twilio_accounts, reminder_template, twilio, settings,
                                               monday_morning, smtp_server):
    # given Twilio keeps answering 503 and the mail server is down for a while
    settings.SEND_MAX_ATTEMPTS = 2
    twilio.script(PATIENT_MOBILE, code=20503)
    port = settings.EMAIL_PORT
    settings.EMAIL_PORT = 1  # nothing listens there
    msg = send_reminder(patient)

    # when SMS has used up its attempts and the first email attempt cannot connect
    msg = _retry_until_settled(monday_morning, msg)

    # then the email is retried (its own first try) rather than failed at once
    assert (msg.channel, msg.status) == ("email", MessageStatus.QUEUED)
    assert msg.attempts.filter(channel="sms").count() == 2
    assert msg.attempts.filter(channel="email").get().outcome == AttemptOutcome.RETRY

    # and goes out when the server is back
    settings.EMAIL_PORT = port
    monday_morning.shift(dt.timedelta(hours=1))
    drain()
    msg.refresh_from_db()
    assert msg.status == MessageStatus.SENT
    assert len(smtp_server.messages) == 1


# --- permanent errors ----------------------------------------------------------------------------

def test_unsubscribed_21610_revokes_sms_consent_and_falls_back_to_email_with_text_and_html(
        patient, twilio_accounts, reminder_template, twilio, smtp_server):
    # given Twilio says the number replied STOP at the carrier
    twilio.script(PATIENT_MOBILE, code=21610)
    msg = send_reminder(patient)

    # when the worker delivers
    drain()

    # then SMS consent is withdrawn in the ledger (source: provider) for every purpose
    revoked = ConsentEvent.objects.filter(patient=patient, channel="sms", action="revoke")
    assert set(revoked.values_list("purpose", flat=True)) == set(Purpose.values)
    assert set(revoked.values_list("source", flat=True)) == {ConsentSource.PROVIDER}
    assert not may_contact(patient, "sms", Purpose.CARE)
    # and the reminder went by email, with a plain-text and an HTML part
    msg.refresh_from_db()
    assert (msg.channel, msg.status) == ("email", MessageStatus.SENT)
    (mail,) = smtp_server.messages
    assert mail.rcpt_tos == [PATIENT_EMAIL]
    assert mail.subject == "Promemoria"
    assert "Ciao Anna, appuntamento lun 10:00." in mail.body("plain")
    assert "Ciao Anna, appuntamento lun 10:00." in mail.body("html")
    assert [(a.channel, a.outcome, a.error_code) for a in msg.attempts.order_by("number")] == [
        ("sms", AttemptOutcome.FAILED, "21610"), ("email", AttemptOutcome.ACCEPTED, ""),
    ]
    assert twilio.count() == 0


def test_email_html_part_escapes_the_body(patient, twilio_accounts, reminder_template, twilio, smtp_server):
    # given a value that looks like markup
    patient.preferred_channels = ["email"]
    patient.save()
    message_send(patient=patient, purpose="care", template="reminder", idempotency_key="html-1",
                 context={"first_name": "<b>Anna</b>", "when": "lun 10:00"})

    # when it is emailed
    drain()

    # then the HTML part shows it as text, not markup
    (mail,) = smtp_server.messages
    assert "&lt;b&gt;Anna&lt;/b&gt;" in mail.body("html")
    assert "<b>Anna</b>" in mail.body("plain")


@pytest.mark.parametrize("code", [21211, 21614])
def test_invalid_number_marks_the_contact_point_invalid_keeps_it_and_falls_back(
        patient, twilio_accounts, reminder_template, twilio, smtp_server, code):
    # given Twilio rejects the number as invalid / not a mobile
    twilio.script(PATIENT_MOBILE, code=code)
    msg = send_reminder(patient)

    # when the worker delivers
    drain()

    # then the number is kept but marked invalid, saying why
    cp = ContactPoint.objects.get(patient=patient, kind="phone")
    assert cp.value == PATIENT_MOBILE
    assert cp.is_valid is False
    assert str(code) in cp.invalid_reason
    # and the reminder went by email
    msg.refresh_from_db()
    assert (msg.channel, msg.status) == ("email", MessageStatus.SENT)
    assert len(smtp_server.messages) == 1
    # and the next message does not try that number
    later = send_reminder(patient, key="reminder-2")
    assert {"channel": "sms", "skipped": "no_valid_address"} in later.routing


def test_63016_on_whatsapp_free_text_is_resent_as_the_template_on_whatsapp(whatsapp_patient, twilio_accounts,
                                                                         reminder_template, twilio):
    # given we believe the window is open but Twilio says it closed
    open_whatsapp_window(whatsapp_patient)
    twilio.script(WHATSAPP_MOBILE, code=63016, times=1)
    msg = send_reminder(whatsapp_patient)

    # when the worker delivers
    drain()

    # then the free text was refused and the approved template went out on WhatsApp
    first, second = creates(twilio)
    assert first.form["Body"] and first.error_code == 63016
    assert second.form["ContentSid"] == CONTENT_SID and "Body" not in second.form
    assert second.form["To"] == WHATSAPP_MOBILE
    msg.refresh_from_db()
    assert (msg.channel, msg.status) == ("whatsapp", MessageStatus.SENT)
    assert [(a.mode, a.outcome) for a in msg.attempts.order_by("number")] == [
        ("text", AttemptOutcome.FAILED), ("template", AttemptOutcome.ACCEPTED)]
    conv = Conversation.objects.get(patient=whatsapp_patient)
    assert conv.whatsapp_window_ends_at <= timezone.now()
    assert twilio.count(to=WHATSAPP_MOBILE) == 1


def test_permanent_error_with_no_other_channel_fails_with_the_reason(patient, twilio_accounts, reminder_template,
                                                                     twilio):
    # given SMS is the patient's only channel and the number is invalid
    patient.preferred_channels = ["sms"]
    patient.save()
    twilio.script(PATIENT_MOBILE, code=21211)
    msg = send_reminder(patient)

    # when the worker delivers
    drain()

    # then the message failed with Twilio's reason
    msg.refresh_from_db()
    assert msg.status == MessageStatus.FAILED
    assert msg.error_code == "21211"
    assert "Invalid 'To' Phone Number" in msg.error_message
    assert {"channel": "sms", "failed": "21211"} in msg.routing
    assert drain() == 0


def test_no_allowed_channel_at_send_time_stores_a_failed_message_with_the_routing_reasons(
        site_a, twilio_accounts, reminder_template, twilio):
    # given a patient with a phone and an email but no consent at all (strict mode)
    from patients.services import contact_point_add

    p = PatientFactory(home_site=site_a, preferred_channels=["whatsapp", "sms", "email"])
    contact_point_add(patient=p, kind="phone", value="+39 347 765 4321")

    # when a reminder is requested
    msg = send_reminder(p)

    # then it is stored as failed, saying why each channel was not used, and nothing goes out
    assert msg.status == MessageStatus.FAILED
    assert msg.error_code == "no_allowed_channel"
    assert msg.routing == [
        {"channel": "whatsapp", "skipped": "no_opt_in"},
        {"channel": "sms", "skipped": "no_opt_in"},
        {"channel": "email", "skipped": "no_opt_in"},
    ]
    assert drain() == 0
    assert twilio.requests == []


# --- unknown outcomes and reconciliation -----------------------------------------------------------

def test_timeout_after_the_request_reached_twilio_is_unknown_never_resent_and_reconciled(
        patient, twilio_accounts, reminder_template, twilio, settings, monday_morning):
    # given Twilio creates the message but answers later than our timeout
    settings.TWILIO_TIMEOUT = 0.5
    settings.RECONCILE_AFTER_SECONDS = 60
    twilio.script(PATIENT_MOBILE, delay=3, times=1)
    msg = send_reminder(patient)

    # when the worker delivers
    drain()

    # then the outcome is unknown and the message is not sent again by dispatch
    msg.refresh_from_db()
    assert msg.status == MessageStatus.UNKNOWN
    assert msg.attempts.get().outcome == AttemptOutcome.UNKNOWN
    assert twilio.count(to=PATIENT_MOBILE) == 1
    assert drain() == 0
    assert reconcile() == 0  # too early to ask

    # when the relay reconciles after RECONCILE_AFTER_SECONDS
    monday_morning.shift(dt.timedelta(seconds=61))
    assert reconcile() == 1

    # then the message is found at Twilio: sent, with Twilio's sid, created exactly once
    (created,) = twilio.messages
    msg.refresh_from_db()
    assert msg.status == MessageStatus.SENT
    assert msg.provider_id == created.sid
    assert msg.attempts.get().outcome == AttemptOutcome.FOUND
    assert drain() == 0
    assert reconcile() == 0
    assert twilio.count(to=PATIENT_MOBILE) == 1


def test_unknown_outcome_not_found_at_twilio_is_sent_again_once(patient, twilio_accounts, reminder_template, twilio,
                                                                settings, monday_morning):
    # given the connection dropped before Twilio created anything
    settings.RECONCILE_AFTER_SECONDS = 60
    twilio.script(PATIENT_MOBILE, drop=True, accept=False, times=1)
    msg = send_reminder(patient)
    drain()
    msg.refresh_from_db()
    assert msg.status == MessageStatus.UNKNOWN
    assert twilio.count() == 0

    # when reconciled
    monday_morning.shift(dt.timedelta(seconds=61))
    assert reconcile() == 1
    drain()

    # then it was looked up, not found, and sent once
    msg.refresh_from_db()
    assert msg.status == MessageStatus.SENT
    assert twilio.count(to=PATIENT_MOBILE) == 1
    assert [a.outcome for a in msg.attempts.order_by("number")] == [AttemptOutcome.NOT_FOUND, AttemptOutcome.ACCEPTED]


def test_worker_dead_after_claim_before_calling_twilio_is_requeued_and_sent_once(
        patient, twilio_accounts, reminder_template, twilio, monday_morning):
    # given a worker claimed the message and died before doing anything else
    msg = send_reminder(patient)
    assert claim(10) == [msg.pk]
    assert drain() == 0  # another worker cannot take it while the lease runs
    assert reconcile() == 0

    # when the lease has run out and the relay reconciles
    monday_morning.shift(dt.timedelta(seconds=claim_lease_seconds() + 1))
    assert reconcile() == 1
    drain()

    # then it is sent exactly once
    msg.refresh_from_db()
    assert msg.status == MessageStatus.SENT
    assert twilio.count(to=PATIENT_MOBILE) == 1
    assert msg.attempts.get().outcome == AttemptOutcome.ACCEPTED


def test_a_worker_whose_lease_ran_out_does_not_send_what_it_no_longer_owns(
        patient, twilio_accounts, reminder_template, twilio, monday_morning):
    # given a slow worker claimed the message and its lease ran out before it reached the send
    from messaging.dispatch import deliver

    msg = send_reminder(patient)
    ids = claim(10)
    monday_morning.shift(dt.timedelta(seconds=claim_lease_seconds() + 1))

    # when that worker carries on
    deliver(ids)

    # then it sends nothing (the relay owns the row now) and the relay sends it exactly once
    assert twilio.count(to=PATIENT_MOBILE) == 0
    assert reconcile() == 1
    drain()
    msg.refresh_from_db()
    assert msg.status == MessageStatus.SENT
    assert twilio.count(to=PATIENT_MOBILE) == 1


def test_a_row_claimed_again_by_another_worker_is_not_the_stale_workers_to_send(
        patient, twilio_accounts, reminder_template, twilio, monday_morning):
    from messaging.dispatch import _renew

    # given a worker read its claimed row, then stalled until its lease ran out
    msg = send_reminder(patient)
    claim(10)
    seen_by_stale_worker = Message.objects.get(pk=msg.pk)
    monday_morning.shift(dt.timedelta(seconds=claim_lease_seconds() + 1))
    # and the relay re-queued the row and a second worker claimed it (it is `sending` again)
    assert reconcile() == 1
    assert claim(10) == [msg.pk]
    seen_by_second_worker = Message.objects.get(pk=msg.pk)

    # then only the second worker's claim may go on to the send
    assert _renew([(seen_by_stale_worker, None, "text")], timeout=3, parallel=True) == []
    assert len(_renew([(seen_by_second_worker, None, "text")], timeout=3, parallel=True)) == 1


def test_a_stop_that_arrives_while_a_batch_is_sending_stops_the_rest_of_it(
        patient, twilio_accounts, reminder_template, twilio, monday_morning):
    from messaging.dispatch import _still_allowed

    # given a worker claimed the reminder and checked consent, and is busy with an earlier group
    msg = send_reminder(patient)
    claim(10)
    claimed = Message.objects.select_related("patient").get(pk=msg.pk)
    # when the patient's STOP is processed meanwhile
    consent_revoke_channel(patient=patient, channel="sms", source=ConsentSource.KEYWORD)

    # then, reaching the SMS group, the worker drops it and the message moves to the next channel
    assert _still_allowed([(claimed, None, "text")]) == []
    msg.refresh_from_db()
    assert (msg.status, msg.channel) == (MessageStatus.QUEUED, "email")
    assert {"channel": "sms", "failed": "consent_revoked"} in msg.routing
    assert twilio.count(to=PATIENT_MOBILE) == 0


def accepted_then_worker_died(msg: Message) -> tuple[Message, str]:
    """What a worker leaves when it dies right after Twilio accepted the message: the row claimed
    (`sending`), its attempt `started`, the message created at Twilio. Returns the row and the sid."""
    claim(10)
    msg.refresh_from_db()
    MessageAttempt.objects.create(message=msg, number=msg.attempt_count, channel=msg.channel, provider="twilio",
                                  mode="text", started_at=timezone.now(), outcome=AttemptOutcome.STARTED)
    return msg, provider_for(msg.account).send(outbound_for(msg, "text")).provider_id


def test_worker_dead_after_twilio_accepted_before_recording_is_found_not_resent(
        patient, twilio_accounts, reminder_template, twilio, monday_morning):
    # given a worker claimed the message, logged its attempt, got it accepted by Twilio, then died
    msg, _sid = accepted_then_worker_died(send_reminder(patient))
    assert twilio.count(to=PATIENT_MOBILE) == 1

    # when the lease has run out and the relay reconciles
    monday_morning.shift(dt.timedelta(seconds=claim_lease_seconds() + 1))
    assert reconcile() == 1
    drain()

    # then the message Twilio holds is adopted; nothing is sent again
    msg.refresh_from_db()
    assert msg.status == MessageStatus.SENT
    assert msg.provider_id == twilio.messages[0].sid
    assert twilio.count(to=PATIENT_MOBILE) == 1


def test_reconcile_finding_the_message_failed_at_twilio_falls_back_like_its_receipt_would(
        patient, twilio_accounts, reminder_template, twilio, monday_morning):
    # given a worker got the SMS accepted by Twilio and died before recording it
    msg, sid = accepted_then_worker_died(send_reminder(patient))
    # and the carrier has since refused it: the number is not a working handset
    twilio.set_status(sid, "undelivered", 30005)

    # when the relay reconciles
    monday_morning.shift(dt.timedelta(seconds=claim_lease_seconds() + 1))
    assert reconcile() == 1

    # then the SMS is not sent again; the number is marked invalid and the email fallback is queued
    msg.refresh_from_db()
    assert (msg.status, msg.channel, msg.error_code) == (MessageStatus.QUEUED, "email", "30005")
    assert twilio.count(to=PATIENT_MOBILE) == 1
    assert not ContactPoint.objects.get(patient=patient, kind="phone").is_valid
    assert msg.attempts.get(channel="sms").outcome == AttemptOutcome.FAILED


def test_reconcile_does_not_adopt_another_message_to_the_same_number(whatsapp_patient, twilio_accounts,
                                                                     reminder_template, twilio, settings,
                                                                     monday_morning):
    # given a WhatsApp template whose create timed out (Twilio did create it)
    settings.TWILIO_TIMEOUT = 0.5
    settings.RECONCILE_AFTER_SECONDS = 60
    twilio.script(WHATSAPP_MOBILE, delay=3, times=1)
    lost = send_reminder(whatsapp_patient, key="appointment-1")
    drain()
    lost.refresh_from_db()
    assert lost.status == MessageStatus.UNKNOWN
    # and, a little later, another template to the same patient that went through normally
    monday_morning.shift(dt.timedelta(seconds=10))
    other = send_reminder(whatsapp_patient, key="appointment-2")
    drain()
    other.refresh_from_db()
    assert other.status == MessageStatus.SENT

    # when the first one is reconciled
    monday_morning.shift(dt.timedelta(seconds=61))
    assert reconcile() == 1

    # then it gets its own Twilio message, not the other one's
    lost.refresh_from_db()
    first_created = twilio.messages[0]
    assert lost.status == MessageStatus.SENT
    assert lost.provider_id == first_created.sid != other.provider_id
    assert twilio.count(to=WHATSAPP_MOBILE) == 2


def test_status_callback_settles_an_unknown_outcome_before_reconcile(patient, twilio_accounts, reminder_template,
                                                                    twilio, settings, client, monday_morning):
    # given a create that timed out (Twilio has the message)
    settings.TWILIO_TIMEOUT = 0.5
    twilio.script(PATIENT_MOBILE, delay=3, times=1)
    msg = send_reminder(patient)
    drain()
    (created,) = twilio.messages

    # when Twilio's status callback arrives (to ...?ref=<our id>)
    assert post_twilio_status(client, twilio, created.sid, "delivered").status_code == 200
    process_inbound()

    # then the message is delivered, with Twilio's sid; the relay has nothing left to do
    msg.refresh_from_db()
    assert (msg.status, msg.provider_id) == (MessageStatus.DELIVERED, created.sid)
    monday_morning.shift(dt.timedelta(seconds=settings.RECONCILE_AFTER_SECONDS + 1))
    assert reconcile() == 0
    assert drain() == 0
    assert twilio.count() == 1


def test_wrong_credentials_are_retried_not_failed(patient, twilio_accounts, reminder_template, twilio, settings):
    # given a misconfigured auth token (every message would fail alike until it is fixed)
    settings.TWILIO_AUTH_TOKEN = "f" * 32
    msg = send_reminder(patient)

    # when the worker tries
    drain()

    # then the message waits for a retry with Twilio's code, nothing is refused for good
    msg.refresh_from_db()
    assert (msg.status, msg.error_code, msg.channel) == (MessageStatus.QUEUED, "20003", "sms")
    assert msg.attempts.get().outcome == AttemptOutcome.RETRY


def test_63016_reported_in_the_status_callback_resends_as_the_template(whatsapp_patient, twilio_accounts,
                                                                      reminder_template, twilio, client):
    # given WhatsApp free text Twilio accepted (we believed the window open)
    open_whatsapp_window(whatsapp_patient)
    msg = send_reminder(whatsapp_patient)
    drain()
    (text,) = twilio.messages

    # when Twilio reports afterwards that it failed with 63016 (outside the window), twice
    for _ in range(2):
        assert post_twilio_status(client, twilio, text.sid, "failed", error_code=63016).status_code == 200
    process_inbound()
    drain()

    # then the approved template went out on WhatsApp, once, and the history shows both tries
    text_create, template_create = creates(twilio)
    assert template_create.form["ContentSid"] == CONTENT_SID and template_create.form["To"] == WHATSAPP_MOBILE
    msg.refresh_from_db()
    assert (msg.channel, msg.status, msg.provider_id) == ("whatsapp", MessageStatus.SENT, template_create.sid)
    assert [(a.mode, a.outcome, a.error_code) for a in msg.attempts.order_by("number")] == [
        ("text", AttemptOutcome.FAILED, "63016"), ("template", AttemptOutcome.ACCEPTED, "")]
    assert Conversation.objects.get(patient=whatsapp_patient).whatsapp_window_ends_at <= timezone.now()
    assert drain() == 0
