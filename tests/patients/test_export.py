"""The data export (GDPR art. 15 and 20): everything held about the person, merged-in records included."""

import datetime as dt

import pytest

from consent.models import ConsentSource
from consent.services import access_log_record, consent_grant
from patients.models import ChangeSource
from patients.selectors import patient_export
from patients.services import patient_create, patient_merge, patient_update
from tests.factories import staff_user

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def desk(site_a):
    return staff_user(sites=[site_a], email="desk@example.org")


@pytest.fixture
def survivor(site_a, desk, time_machine):
    time_machine.move_to(T0, tick=False)
    patient = patient_create(home_site=site_a, given_name="Mario", family_name="Rossi", actor=desk,
                             notes="Prefers morning appointments.")
    access_log_record(patient=patient, what="view_360", actor=desk)
    return patient


@pytest.fixture
def merged(site_a, desk, survivor, time_machine):
    """A duplicate with its own notes, a consent statement and a read, merged into the survivor."""
    time_machine.move_to(T0 + HOUR, tick=False)
    loser = patient_create(home_site=site_a, given_name="Mario", family_name="Rosi", actor=desk,
                           notes="Hard of hearing.")
    consent_grant(patient=loser, channel="sms", purpose="care", source=ConsentSource.PORTAL, at=T0 + HOUR)
    access_log_record(patient=loser, what="profile", actor=desk)
    time_machine.move_to(T0 + 2 * HOUR, tick=False)
    patient_merge(survivor=survivor, loser=loser, actor=desk)
    return loser


def test_export_profile_includes_the_notes_held_about_the_patient(survivor, desk):
    # Given notes that were changed (the old and new text are already in profile_changes)
    patient_update(patient=survivor, actor=desk, source=ChangeSource.STAFF, notes="Prefers afternoons.")

    # When the patient's data is exported
    export = patient_export(survivor)

    # Then the profile holds the current notes too
    assert export["profile"]["notes"] == "Prefers afternoons."
    assert export["profile_changes"][-1]["changes"] == {"notes": ["Prefers morning appointments.", "Prefers afternoons."]}


def test_export_after_a_merge_includes_the_access_log_of_the_merged_record(survivor, merged):
    export = patient_export(survivor)

    assert [(row["what"], row["at"]) for row in export["access_log"]] == [
        ("view_360", T0.isoformat()), ("profile", (T0 + HOUR).isoformat()),
    ]


def test_export_after_a_merge_lists_each_consent_statement_once(survivor, merged):
    export = patient_export(survivor)

    assert [(c["channel"], c["purpose"], c["action"], c["source"]) for c in export["consents"]] == [
        ("sms", "care", "grant", "portal"),
    ]


def test_export_after_a_merge_includes_the_profile_of_the_merged_record(survivor, merged):
    export = patient_export(survivor)

    assert export["profile"]["id"] == survivor.pk
    assert [(r["id"], r["family_name"], r["notes"]) for r in export["profile"]["merged_records"]] == [
        (merged.pk, "Rosi", "Hard of hearing."),
    ]


def test_export_of_a_patient_without_merges_has_no_merged_records(survivor):
    assert patient_export(survivor)["profile"]["merged_records"] == []
