"""Who may write a claimed row: interleavings of a worker, the relay and receipts.

Each test stops one actor at a chosen point (by calling the spine's steps in the order a slow or
paused process would), lets another act, then lets the first carry on. The rule under test: a
row is written only by the claim that owns it, so no message goes out twice and none is lost.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from channels_hub.inbound import StatusUpdate
from channels_hub.providers import TransportError, provider_for
from channels_hub.providers.email import EmailProvider
from consent.models import Purpose
from messaging import dispatch
from messaging.dispatch import _renew, claim, claim_lease_seconds, deliver, outbound_for, reconcile
from messaging.inbound import handle_status_update
from messaging.models import AttemptOutcome, Message, MessageAttempt, MessageStatus
from patients.services import contact_point_add
from tests.factories import PatientFactory, consent_event
from tests.messaging.spine import CONSENTED_AT, drain
from tests.messaging.test_twilio_delivery import open_whatsapp_window, send_reminder

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("monday_morning")]


def test_a_failure_receipt_that_beats_the_workers_record_leaves_the_fallback_to_be_sent(
        patient, twilio_accounts, reminder_template, twilio, monday_morning, smtp_email_settings, monkeypatch):
    # given Twilio's 'undelivered' receipt for the SMS arrives before the worker records the send,
    # so the message has already fallen back to email when the worker writes its result
    msg = send_reminder(patient)
    record = dispatch._record
    sids = []

    def receipt_first(items, results, attempts):
        sids.append(results[0].provider_id)
        handle_status_update(StatusUpdate("twilio", sids[0], "undelivered", "30003", str(msg.pk)))
        record(items, results, attempts)

    monkeypatch.setattr(dispatch, "_record", receipt_first)
    dispatch.dispatch_once()
    monkeypatch.setattr(dispatch, "_record", record)
    msg.refresh_from_db()
    assert (msg.status, msg.channel, msg.provider_id) == (MessageStatus.QUEUED, "email", None)

    # when a late, out-of-order 'sent' receipt for the SMS comes too
    handle_status_update(StatusUpdate("twilio", sids[0], "sent", "", str(msg.pk)))

    # then the email still goes out, once
    drain()
    msg.refresh_from_db()
    assert (msg.status, msg.channel) == (MessageStatus.SENT, "email")
    assert len(smtp_email_settings.messages) == 1


def test_a_stale_workers_refusal_does_not_move_the_row_another_worker_is_sending(
        patient, twilio_accounts, reminder_template, twilio, monday_morning):
    # given worker A's claim ran out, the relay re-queued the row and worker B claimed it
    msg = send_reminder(patient)
    claim(10)
    seen_by_a = Message.objects.select_related("patient", "conversation").get(pk=msg.pk)
    monday_morning.shift(dt.timedelta(seconds=claim_lease_seconds() + 1))
    assert reconcile() == 1
    assert claim(10) == [msg.pk]

    # when A, still running, records a permanent refusal it got
    dispatch._record_failure(seen_by_a, None, TransportError("refused", permanent=True, code="21612"), timezone.now())

    # then B's send in flight is left alone (no fallback to email under it)
    row = Message.objects.get(pk=msg.pk)
    assert (row.status, row.channel) == (MessageStatus.SENDING, "sms")


def test_a_row_the_relay_has_started_to_reconcile_is_no_longer_the_workers(
        patient, twilio_accounts, reminder_template, twilio, monday_morning):
    # given a worker read its claim, then stalled past its lease
    msg = send_reminder(patient)
    claim(10)
    seen_by_worker = Message.objects.get(pk=msg.pk)
    monday_morning.shift(dt.timedelta(seconds=claim_lease_seconds() + 1))

    # when the relay takes the row over (its first step: a new lease, the claim number unchanged)
    relock = timezone.now() + dt.timedelta(seconds=60)
    assert Message.objects.filter(pk=msg.pk).update(claimed_until=relock) == 1

    # then the worker, reaching the row's group, does not keep it
    assert _renew([(seen_by_worker, None, "text")], timeout=3, parallel=True) == []


def test_reconcile_after_a_template_resend_does_not_adopt_the_free_text_twilio_refused(
        whatsapp_patient, twilio_accounts, reminder_template, twilio, monday_morning):
    # given WhatsApp free text Twilio reported 63016 for, so the approved template was queued
    open_whatsapp_window(whatsapp_patient)
    msg = send_reminder(whatsapp_patient)
    drain()
    msg.refresh_from_db()
    free_text = msg.provider_id
    twilio.set_status(free_text, "failed", 63016)
    handle_status_update(StatusUpdate("twilio", free_text, "failed", "63016", str(msg.pk)))
    msg.refresh_from_db()
    assert msg.status == MessageStatus.QUEUED
    # and the worker sending the template died after Twilio accepted it, seconds later
    monday_morning.shift(dt.timedelta(seconds=2))
    claim(10)
    msg.refresh_from_db()
    MessageAttempt.objects.create(message=msg, number=msg.attempt_count, channel="whatsapp", provider="twilio",
                                  mode="template", started_at=timezone.now(), outcome=AttemptOutcome.STARTED)
    template = provider_for(msg.account).send(outbound_for(msg, "template")).provider_id

    # when the relay reconciles
    monday_morning.shift(dt.timedelta(seconds=claim_lease_seconds() + 1))
    assert reconcile() == 1

    # then the template send is found, not the refused free text
    msg.refresh_from_db()
    assert (msg.status, msg.channel, msg.provider_id) == (MessageStatus.SENT, "whatsapp", template)


def test_an_email_worker_slowed_past_its_lease_does_not_send_what_another_worker_took(
        site_a, twilio_accounts, reminder_template, monday_morning, smtp_email_settings, monkeypatch):
    # given two email reminders claimed by one worker
    for i in range(2):
        p = PatientFactory(home_site=site_a, given_name=f"P{i}", language="it", preferred_channels=["email"])
        contact_point_add(patient=p, kind="email", value=f"p{i}@example.org")
        consent_event(p, "email", Purpose.CARE, at=CONSENTED_AT)
        send_reminder(p, key=f"mail-{i}")
    ids = claim(10)
    send_many = EmailProvider.send_many
    calls = []

    def slow_first_mail(self, outbounds):
        sent = send_many(self, outbounds)
        calls.append(outbounds)
        if len(calls) == 1:
            # the first mail took longer than the group's lease; the relay and another worker ran
            monday_morning.shift(dt.timedelta(seconds=dispatch.lease_seconds(2, timeout=60, parallel=False)))
            reconcile()
            monkeypatch.setattr(EmailProvider, "send_many", send_many)
            dispatch.dispatch_once()
            monkeypatch.setattr(EmailProvider, "send_many", slow_first_mail)
        return sent

    # when that worker carries on with its second mail
    monkeypatch.setattr(EmailProvider, "send_many", slow_first_mail)
    deliver(ids)

    # then each patient got one mail
    assert sorted(rcpt for m in smtp_email_settings.messages for rcpt in m.rcpt_tos) == [
        "p0@example.org", "p1@example.org"]
    assert not Message.objects.exclude(status=MessageStatus.SENT).exists()
