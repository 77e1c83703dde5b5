"""Who the ledger and the access log say acted: staff by name, never a superuser as a patient."""

import pytest

from clinics.models import User
from consent.models import ConsentSource, Purpose
from consent.services import access_log_record, consent_grant
from patients.models import Channel
from tests.factories import PatientFactory


@pytest.fixture
def patient(site_a):
    return PatientFactory(home_site=site_a)


def test_a_superuser_without_a_staff_row_is_labelled_by_email_not_as_a_patient(patient):
    admin = User.objects.create_superuser(email="root@example.org")

    event = consent_grant(patient=patient, channel=Channel.SMS, purpose=Purpose.CARE, source=ConsentSource.STAFF,
                          actor=admin)
    row = access_log_record(patient=patient, what="profile", actor=admin)

    assert event.actor_label == "root@example.org"
    assert row.actor_label == "root@example.org"


def test_a_superuser_with_a_name_is_labelled_by_name(patient):
    admin = User.objects.create_superuser(email="root@example.org", first_name="Ada", last_name="Bruni")

    row = access_log_record(patient=patient, what="profile", actor=admin)

    assert row.actor_label == "Ada Bruni"


def test_a_django_admin_user_without_a_staff_row_is_not_labelled_as_a_patient(patient):
    operator = User.objects.create_user(email="ops@example.org", is_staff=True)

    row = access_log_record(patient=patient, what="profile", actor=operator)

    assert row.actor_label == "ops@example.org"


def test_a_portal_user_is_still_labelled_as_the_patient(patient):
    account = User.objects.create_user(email="anna@example.org")

    row = access_log_record(patient=patient, what="portal_export", actor=account)

    assert row.actor_label == "Patient (anna@example.org)"
