"""Quiet hours in the patient's time zone: a reminder due at night waits for the morning (deferred, not
dropped, DST-safe); urgent messages go at once."""

import datetime as dt
import zoneinfo

import pytest

from channels_hub.models import SandboxMessage
from messaging.dispatch import claim
from messaging.models import MessageStatus
from messaging.services import message_send
from tests.messaging.spine import PATIENT_MOBILE, REMINDER_CONTEXT, drain

pytestmark = pytest.mark.django_db

ROME = zoneinfo.ZoneInfo("Europe/Rome")


def rome(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=ROME)


def send_reminder(patient, key="reminder-1", **kwargs):
    return message_send(patient=patient, purpose="care", template="reminder", context=REMINDER_CONTEXT,
                        idempotency_key=key, **kwargs)


@pytest.fixture
def night_owl(patient):
    """`patient` (home site in Europe/Rome) with quiet hours 21:00-08:00, SMS first."""
    patient.quiet_hours_start, patient.quiet_hours_end = dt.time(21, 0), dt.time(8, 0)
    patient.preferred_channels = ["sms", "email"]
    patient.save()
    return patient


@pytest.mark.parametrize(("queued_at", "morning_utc"), [
    # an ordinary night: 23:00 CET -> 08:00 CET = 07:00 UTC
    (rome(2030, 3, 5, 23, 0), dt.datetime(2030, 3, 6, 7, 0, tzinfo=dt.UTC)),
    # clocks go forward (night of 28/29 March 2026): 23:00 CET -> 08:00 CEST = 06:00 UTC
    (rome(2026, 3, 28, 23, 0), dt.datetime(2026, 3, 29, 6, 0, tzinfo=dt.UTC)),
    # clocks go back (night of 24/25 October 2026): 23:00 CEST -> 08:00 CET = 07:00 UTC
    (rome(2026, 10, 24, 23, 0), dt.datetime(2026, 10, 25, 7, 0, tzinfo=dt.UTC)),
    # after midnight: 01:30 -> 08:00 the same day
    (rome(2030, 3, 6, 1, 30), dt.datetime(2030, 3, 6, 7, 0, tzinfo=dt.UTC)),
], ids=["ordinary-night", "dst-spring-forward", "dst-fall-back", "after-midnight"])
def test_reminder_queued_at_night_is_deferred_to_eight_local_and_sent_then(
        night_owl, sandbox_accounts, reminder_template, time_machine, queued_at, morning_utc):
    # given it is night in Rome
    time_machine.move_to(queued_at, tick=False)

    # when a reminder is queued
    msg = send_reminder(night_owl)

    # then it waits for 08:00 local the next morning (deferred, not dropped)
    assert msg.status == MessageStatus.QUEUED
    assert msg.not_before == morning_utc == msg.next_attempt_at
    assert msg.not_before.astimezone(ROME).time() == dt.time(8, 0)

    # and no worker claims it a second before
    time_machine.move_to(morning_utc - dt.timedelta(seconds=1), tick=False)
    assert drain() == 0
    assert SandboxMessage.objects.count() == 0

    # when 08:00 local comes
    time_machine.move_to(morning_utc, tick=False)
    assert drain() == 1

    # then it goes out, once
    msg.refresh_from_db()
    assert msg.status == MessageStatus.DELIVERED
    assert msg.sent_at == morning_utc
    assert SandboxMessage.objects.filter(to=PATIENT_MOBILE).count() == 1


def test_urgent_message_at_night_goes_at_once(night_owl, sandbox_accounts, reminder_template, time_machine):
    # given it is 23:00 in Rome
    time_machine.move_to(rome(2030, 3, 5, 23, 0), tick=False)

    # when an urgent message is sent
    msg = send_reminder(night_owl, urgent=True)

    # then it is due now and delivered now
    assert msg.not_before is None
    assert drain() == 1
    msg.refresh_from_db()
    assert msg.status == MessageStatus.DELIVERED


def test_quiet_hours_follow_the_patients_own_time_zone(night_owl, sandbox_accounts, reminder_template, time_machine):
    # given a patient of the Rome site living in New York, where it is 15:00 (21:00 in Rome)
    night_owl.time_zone = "America/New_York"
    night_owl.save()
    time_machine.move_to(rome(2030, 3, 5, 21, 0), tick=False)

    # when a reminder is sent
    msg = send_reminder(night_owl)

    # then it goes now
    assert msg.not_before is None
    assert drain() == 1


def test_message_due_before_quiet_hours_but_claimed_during_them_waits_for_the_morning(
        night_owl, sandbox_accounts, reminder_template, time_machine):
    # given a reminder queued at 20:00 that no worker picked up before 21:00
    time_machine.move_to(rome(2030, 3, 5, 20, 0), tick=False)
    msg = send_reminder(night_owl)
    time_machine.move_to(rome(2030, 3, 5, 22, 30), tick=False)

    # when a worker finally claims it
    assert claim(10) == [msg.pk]
    from messaging.dispatch import deliver

    deliver([msg.pk])

    # then it is not sent but put back until 08:00, without using up an attempt
    msg.refresh_from_db()
    assert msg.status == MessageStatus.QUEUED
    assert msg.next_attempt_at == rome(2030, 3, 6, 8, 0)
    assert msg.attempt_count == 0
    assert SandboxMessage.objects.count() == 0


def test_not_before_in_the_day_is_kept(night_owl, sandbox_accounts, reminder_template, time_machine):
    # given it is 10:00 and the caller wants the message at 15:00
    time_machine.move_to(rome(2030, 3, 5, 10, 0), tick=False)

    # when it is queued
    msg = send_reminder(night_owl, not_before=rome(2030, 3, 5, 15, 0))

    # then it waits until 15:00, not longer
    assert msg.next_attempt_at == rome(2030, 3, 5, 15, 0)
    assert drain() == 0
    time_machine.move_to(rome(2030, 3, 5, 15, 0), tick=False)
    assert drain() == 1
