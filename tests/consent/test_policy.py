"""may_contact as a table: channel x purpose x ledger history x CONSENT_MODE -> (allowed, reason)."""

import datetime as dt

import pytest

from consent.models import ConsentAction, ConsentEvent, Purpose
from consent.policy import Decision, may_contact, may_contact_many
from patients.models import Channel, Patient
from tests.factories import PatientFactory, consent_event

AT = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
G, R = ConsentAction.GRANT, ConsentAction.REVOKE
DAY, HOUR = dt.timedelta(days=1), dt.timedelta(hours=1)

# Ledger histories, as (action, offset from AT) in insertion (= id) order, with the action that decides.
HISTORIES = {
    "none": ([], None),
    "grant": ([(G, -2 * DAY)], G),
    "grant-exactly-at": ([(G, dt.timedelta(0))], G),
    "revoke": ([(R, -2 * DAY)], R),
    "grant-then-revoke": ([(G, -3 * DAY), (R, -DAY)], R),
    "revoke-then-grant": ([(R, -3 * DAY), (G, -DAY)], G),
    "grant-in-the-future": ([(G, HOUR)], None),
    "revoke-then-grant-in-the-future": ([(R, -DAY), (G, HOUR)], R),
    "same-instant-revoke-then-grant": ([(R, -DAY), (G, -DAY)], G),
    "same-instant-grant-then-revoke": ([(G, -DAY), (R, -DAY)], R),
    # an import inserts an older statement after a newer one: time decides, not insertion order
    "backdated-revoke-inserted-last": ([(G, -DAY), (R, -3 * DAY)], G),
}

# With no statement in force, what each pair gets: spelled out, not derived from the code under test.
# WhatsApp and marketing always need an opt-in; in opt_out mode the rest is allowed until revoked.
NO_STATEMENT = {
    "strict": {
        (Channel.SMS, Purpose.CARE): False, (Channel.SMS, Purpose.SURVEYS): False, (Channel.SMS, Purpose.MARKETING): False,
        (Channel.EMAIL, Purpose.CARE): False, (Channel.EMAIL, Purpose.SURVEYS): False,
        (Channel.EMAIL, Purpose.MARKETING): False,
        (Channel.WHATSAPP, Purpose.CARE): False, (Channel.WHATSAPP, Purpose.SURVEYS): False,
        (Channel.WHATSAPP, Purpose.MARKETING): False,
    },
    "opt_out": {
        (Channel.SMS, Purpose.CARE): True, (Channel.SMS, Purpose.SURVEYS): True, (Channel.SMS, Purpose.MARKETING): False,
        (Channel.EMAIL, Purpose.CARE): True, (Channel.EMAIL, Purpose.SURVEYS): True,
        (Channel.EMAIL, Purpose.MARKETING): False,
        (Channel.WHATSAPP, Purpose.CARE): False, (Channel.WHATSAPP, Purpose.SURVEYS): False,
        (Channel.WHATSAPP, Purpose.MARKETING): False,
    },
}


def expected(mode: str, channel: str, purpose: str, history: str) -> Decision:
    deciding = HISTORIES[history][1]
    if deciding == G:
        return Decision(True, "granted")
    if deciding == R:
        return Decision(False, "revoked")
    if NO_STATEMENT[mode][(channel, purpose)]:
        return Decision(True, "opt_out_mode")
    return Decision(False, "no_opt_in")


def write_history(patient: Patient, channel: str, purpose: str, history: str) -> None:
    for action, offset in HISTORIES[history][0]:
        consent_event(patient, channel, purpose, action=action, at=AT + offset)


CASES = [
    pytest.param(mode, channel, purpose, history, id=f"{mode}-{channel}-{purpose}-{history}")
    for mode in ("strict", "opt_out")
    for channel in (Channel.SMS, Channel.WHATSAPP, Channel.EMAIL)
    for purpose in (Purpose.CARE, Purpose.SURVEYS, Purpose.MARKETING)
    for history in HISTORIES
]


def test_the_table_covers_every_channel_and_purpose():
    assert {(c, p) for c, p in NO_STATEMENT["strict"]} == {(c, p) for c in Channel.values for p in Purpose.values}
    assert len(CASES) == 2 * 3 * 3 * len(HISTORIES)


@pytest.mark.parametrize(("mode", "channel", "purpose", "history"), CASES)
def test_may_contact(mode, channel, purpose, history, site_a, settings):
    # given
    settings.CONSENT_MODE = mode
    patient = PatientFactory(home_site=site_a)
    write_history(patient, channel, purpose, history)

    # when
    decision = may_contact(patient, channel, purpose, at=AT)

    # then
    assert decision == expected(mode, channel, purpose, history)
    assert bool(decision) is decision.allowed


@pytest.mark.parametrize("mode", ["strict", "opt_out"])
def test_may_contact_many_agrees_with_may_contact_for_the_whole_table(mode, site_a, settings, django_assert_max_num_queries):
    settings.CONSENT_MODE = mode
    checks, wanted = [], []
    for history in HISTORIES:
        patient = PatientFactory(home_site=site_a)
        for channel in Channel.values:
            for purpose in Purpose.values:
                write_history(patient, channel, purpose, history)
                checks.append((patient, channel, purpose))
                wanted.append(expected(mode, channel, purpose, history))

    with django_assert_max_num_queries(1):
        decisions = may_contact_many(checks, at=AT)

    assert decisions == wanted
    assert [may_contact(p, c, u, at=AT) for p, c, u in checks] == wanted


@pytest.mark.parametrize("mode", ["strict", "opt_out"])
@pytest.mark.parametrize("channel", Channel.values)
@pytest.mark.parametrize("purpose", Purpose.values)
def test_statements_on_other_pairs_or_other_patients_do_not_count(mode, channel, purpose, site_a, settings):
    settings.CONSENT_MODE = mode
    patient, sibling = PatientFactory(home_site=site_a), PatientFactory(home_site=site_a)
    consent_event(sibling, channel, purpose, action=G, at=AT - DAY)
    for other_channel in Channel.values:
        for other_purpose in Purpose.values:
            if (other_channel, other_purpose) != (channel, purpose):
                consent_event(patient, other_channel, other_purpose, action=G, at=AT - DAY)

    assert may_contact(patient, channel, purpose, at=AT) == expected(mode, channel, purpose, "none")


@pytest.mark.parametrize("mode", ["strict", "opt_out"])
@pytest.mark.parametrize("channel", Channel.values)
@pytest.mark.parametrize("purpose", Purpose.values)
def test_a_merged_patient_is_never_contactable(mode, channel, purpose, site_a, settings):
    settings.CONSENT_MODE = mode
    survivor = PatientFactory(home_site=site_a)
    loser = PatientFactory(home_site=site_a)
    consent_event(loser, channel, purpose, action=G, at=AT - DAY)
    Patient.objects.filter(pk=loser.pk).update(merged_into=survivor)
    loser.refresh_from_db()

    assert may_contact(loser, channel, purpose, at=AT) == Decision(False, "merged")
    assert may_contact_many([(loser, channel, purpose)], at=AT) == [Decision(False, "merged")]


@pytest.mark.parametrize(("channel", "purpose"), [("telegram", Purpose.CARE), ("SMS", Purpose.CARE), ("", Purpose.CARE),
                                                  (Channel.SMS, "billing"), (Channel.SMS, "")])
def test_an_unknown_channel_or_purpose_raises(channel, purpose, site_a):
    patient = PatientFactory(home_site=site_a)

    with pytest.raises(ValueError, match="unknown channel/purpose"):
        may_contact(patient, channel, purpose, at=AT)
    with pytest.raises(ValueError, match="unknown channel/purpose"):
        may_contact_many([(patient, channel, purpose)], at=AT)


def test_an_unknown_channel_raises_even_for_a_merged_patient(site_a):
    survivor, loser = PatientFactory(home_site=site_a), PatientFactory(home_site=site_a)
    Patient.objects.filter(pk=loser.pk).update(merged_into=survivor)
    loser.refresh_from_db()

    with pytest.raises(ValueError):
        may_contact(loser, "fax", Purpose.CARE, at=AT)


def test_without_a_time_the_decision_is_for_now(site_a, time_machine):
    # given a grant that takes effect in an hour
    time_machine.move_to(AT, tick=False)
    patient = PatientFactory(home_site=site_a)
    consent_event(patient, Channel.WHATSAPP, Purpose.CARE, action=G, at=AT + HOUR)

    # then it does not count yet, and does once that hour has passed
    assert may_contact(patient, Channel.WHATSAPP, Purpose.CARE) == Decision(False, "no_opt_in")
    time_machine.move_to(AT + 2 * HOUR, tick=False)
    assert may_contact(patient, Channel.WHATSAPP, Purpose.CARE) == Decision(True, "granted")


def test_the_decision_at_a_past_time_ignores_later_statements(site_a):
    patient = PatientFactory(home_site=site_a)
    consent_event(patient, Channel.SMS, Purpose.SURVEYS, action=G, at=AT - 3 * DAY)
    consent_event(patient, Channel.SMS, Purpose.SURVEYS, action=R, at=AT - DAY)

    assert may_contact(patient, Channel.SMS, Purpose.SURVEYS, at=AT - 2 * DAY) == Decision(True, "granted")
    assert may_contact(patient, Channel.SMS, Purpose.SURVEYS, at=AT - 4 * DAY).reason == "no_opt_in"
    assert may_contact(patient, Channel.SMS, Purpose.SURVEYS, at=AT) == Decision(False, "revoked")
    assert ConsentEvent.objects.filter(patient=patient).count() == 2
