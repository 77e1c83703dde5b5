"""A date of birth is a real one: not in the future, not before 1900. The model says so; every surface obeys."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from patients.models import ChangeSource, Patient
from patients.services import patient_create, patient_update
from tests.api.conftest import key_client
from tests.factories import api_key

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _now(time_machine):
    time_machine.move_to(NOW, tick=False)


@pytest.fixture
def api(site_a):
    return key_client(api_key(sites=[site_a], can_write=True, name="EHR bridge A")[1])


@pytest.mark.parametrize("born", [dt.date(2999, 1, 1), dt.date(2026, 6, 17), dt.date(1899, 12, 31)])
def test_a_future_or_pre_1900_birth_date_is_refused_naming_the_field(site_a, born):
    with pytest.raises(ValidationError) as exc:
        patient_create(home_site=site_a, given_name="Lia", family_name="Neri", date_of_birth=born)

    assert list(exc.value.message_dict) == ["date_of_birth"]
    assert "date of birth" in exc.value.message_dict["date_of_birth"][0]
    assert not Patient.objects.exists()


@pytest.mark.parametrize("born", [dt.date(1900, 1, 1), dt.date(2026, 6, 15), None])
def test_a_birth_date_from_1900_up_to_today_or_none_is_accepted(site_a, born):
    patient = patient_create(home_site=site_a, given_name="Lia", family_name="Neri", date_of_birth=born)

    assert patient.date_of_birth == born


def test_a_baby_born_today_east_of_utc_is_not_in_the_future(site_a, time_machine):
    # 23:30 UTC on the 15th is already the 16th in Auckland
    time_machine.move_to(dt.datetime(2026, 6, 15, 23, 30, tzinfo=dt.UTC), tick=False)

    patient = patient_create(home_site=site_a, given_name="Lia", family_name="Neri", date_of_birth=dt.date(2026, 6, 16))

    assert patient.date_of_birth == dt.date(2026, 6, 16)


def test_an_update_to_a_future_birth_date_is_refused(site_a):
    patient = patient_create(home_site=site_a, given_name="Lia", family_name="Neri", date_of_birth=dt.date(1990, 1, 1))

    with pytest.raises(ValidationError) as exc:
        patient_update(patient=patient, actor=None, source=ChangeSource.API, date_of_birth=dt.date(2999, 1, 1))

    assert list(exc.value.message_dict) == ["date_of_birth"]
    patient.refresh_from_db()
    assert patient.date_of_birth == dt.date(1990, 1, 1)


def test_api_create_with_a_future_birth_date_is_400_naming_the_field(api):
    response = api.post("/api/v1/patients/", {"given_name": "Lia", "family_name": "Neri", "date_of_birth": "2999-01-01"},
                        format="json")

    assert response.status_code == 400, response.json()
    assert list(response.json()["errors"]) == ["date_of_birth"]
    assert not Patient.objects.exists()


def test_api_update_to_a_pre_1900_birth_date_is_400_naming_the_field(api, site_a):
    patient = patient_create(home_site=site_a, given_name="Lia", family_name="Neri", date_of_birth=dt.date(1990, 1, 1))

    response = api.patch(f"/api/v1/patients/{patient.pk}/", {"date_of_birth": "1850-01-01"}, format="json")

    assert response.status_code == 400, response.json()
    assert list(response.json()["errors"]) == ["date_of_birth"]
    patient.refresh_from_db()
    assert patient.date_of_birth == dt.date(1990, 1, 1)
