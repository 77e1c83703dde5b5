"""Patient 360 timeline: one chronological list across profile changes, consent and reads."""

import datetime as dt

import pytest
from django.utils import translation

from consent.models import ConsentSource
from consent.services import access_log_record, consent_grant, consent_revoke
from patients.models import ChangeSource
from patients.selectors import patient_timeline
from patients.services import contact_point_add, patient_create, patient_merge, patient_update
from tests.factories import staff_user

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)


@pytest.fixture
def desk(site_a):
    return staff_user(sites=[site_a], email="desk@example.org")


@pytest.fixture
def history(site_a, desk, time_machine):
    """Interleaved events, one a minute: profile, consent, access, profile, consent, access, profile."""
    time_machine.move_to(T0, tick=False)
    patient = patient_create(home_site=site_a, given_name="Anna", family_name="Rossi", actor=desk)
    time_machine.move_to(T0 + MIN, tick=False)
    consent_grant(patient=patient, channel="sms", purpose="care", source=ConsentSource.PORTAL)
    time_machine.move_to(T0 + 2 * MIN, tick=False)
    access_log_record(patient=patient, what="profile", actor=desk)
    time_machine.move_to(T0 + 3 * MIN, tick=False)
    patient_update(patient=patient, actor=desk, source=ChangeSource.STAFF, family_name="Rossi-Bianchi")
    time_machine.move_to(T0 + 4 * MIN, tick=False)
    # recorded now, but stated by the patient on paper before the profile change
    consent_revoke(patient=patient, channel="email", purpose="surveys", source=ConsentSource.IMPORT, at=T0 + 150 * dt.timedelta(seconds=1))
    time_machine.move_to(T0 + 5 * MIN, tick=False)
    access_log_record(patient=patient, what="consent", actor=desk)
    time_machine.move_to(T0 + 6 * MIN, tick=False)
    contact_point_add(patient=patient, kind="email", value="anna@example.org", actor=desk)
    return patient


def test_the_timeline_is_one_list_newest_first_across_sources(history):
    entries = patient_timeline(history)

    assert [(e.kind, e.title) for e in entries] == [
        ("profile", "Contact point added"),
        ("access", "Record viewed: Consents"),
        ("profile", "Profile changed"),
        ("consent", "Consent withdrawn: Email, Satisfaction surveys"),  # dated when stated, not when recorded
        ("access", "Record viewed: Profile (edit form)"),
        ("consent", "Consent granted: SMS, Care and appointment reminders"),
        ("profile", "Patient created"),
    ]
    assert [e.at for e in entries] == [
        T0 + 6 * MIN, T0 + 5 * MIN, T0 + 3 * MIN, T0 + dt.timedelta(seconds=150), T0 + 2 * MIN, T0 + MIN, T0,
    ]


def test_timeline_entries_say_who_and_what(history):
    entries = {e.title: e for e in patient_timeline(history)}

    assert (entries["Profile changed"].actor, entries["Profile changed"].detail) == ("desk", "family name")
    assert entries["Consent granted: SMS, Care and appointment reminders"].detail == "Patient portal"
    assert entries["Consent withdrawn: Email, Satisfaction surveys"].actor == "Import"
    assert entries["Record viewed: Consents"].actor == "desk"


@pytest.mark.parametrize("limit", [1, 3, 6])
def test_the_limit_keeps_the_newest_entries(limit, history):
    entries = patient_timeline(history, limit=limit)

    assert entries == patient_timeline(history)[:limit]
    assert len(entries) == limit


def test_the_limit_holds_when_one_source_has_more_than_the_limit(site_a, desk, time_machine):
    time_machine.move_to(T0, tick=False)
    patient = patient_create(home_site=site_a, given_name="Anna", family_name="Rossi")
    for i in range(1, 30):
        time_machine.move_to(T0 + i * MIN, tick=False)
        access_log_record(patient=patient, what=f"read {i}", actor=desk)
    time_machine.move_to(T0 + 10 * MIN + dt.timedelta(seconds=30), tick=False)
    consent_grant(patient=patient, channel="sms", purpose="care", source=ConsentSource.STAFF, actor=desk)

    entries = patient_timeline(patient, limit=25)

    assert len(entries) == 25
    assert entries[0].title == "Record viewed: read 29"
    assert [e.kind for e in entries].count("consent") == 1
    assert entries[-1].at == T0 + 6 * MIN


def test_the_timeline_can_be_filtered_by_kind(history):
    assert {e.kind for e in patient_timeline(history, kinds={"consent"})} == {"consent"}
    assert len(patient_timeline(history, kinds={"access", "profile"})) == 5


def test_the_timeline_shows_only_this_patients_history(history, site_a):
    other = patient_create(home_site=site_a, given_name="Luca", family_name="Verdi")

    assert [e.title for e in patient_timeline(other)] == ["Patient created"]
    assert len(patient_timeline(history)) == 7


def test_timeline_detail_names_the_changed_fields_by_their_labels_not_their_keys(site_a, desk, time_machine):
    # Given a profile change, a contact point added and a duplicate merged in
    time_machine.move_to(T0, tick=False)
    patient = patient_create(home_site=site_a, given_name="Anna", family_name="Rossi", actor=desk)
    duplicate = patient_create(home_site=site_a, given_name="Ana", family_name="Rossi", actor=desk)
    time_machine.move_to(T0 + MIN, tick=False)
    patient_update(patient=patient, actor=desk, source=ChangeSource.STAFF, given_name="Annalisa", notes="Deaf: SMS only")
    time_machine.move_to(T0 + 2 * MIN, tick=False)
    contact_point_add(patient=patient, kind="whatsapp", value="+39 347 123 4567", actor=desk)
    time_machine.move_to(T0 + 3 * MIN, tick=False)
    patient_merge(survivor=patient, loser=duplicate, actor=desk)

    # When the timeline is read
    details = {e.title: e.detail for e in patient_timeline(patient, kinds={"profile"})}

    # Then each change says what it touched in words, not as a stored key
    assert details["Profile changed"] == "given name, notes"
    assert details["Contact point added"] == "WhatsApp"
    assert details["Duplicate record merged in"] == "merged record"


def test_timeline_detail_is_in_the_readers_language(history):
    with translation.override("it"):
        entries = patient_timeline(history, kinds={"profile"})

    assert [e.detail for e in entries if e.detail] == ["Email", "cognome"]
