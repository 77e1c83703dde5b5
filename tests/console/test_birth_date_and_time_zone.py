"""Console profile and preference forms accept what the model accepts, and refuse what it refuses."""

import datetime as dt

import pytest
from django.urls import reverse

from patients.models import ChangeSource, Patient
from patients.services import patient_update

NEW = reverse("console:patient_new")


def _prefs(patient):
    return reverse("console:patient_preferences", args=[patient.pk])


def _prefs_post(**overrides):
    data = {"channel_1": "sms", "channel_2": "", "channel_3": "", "language": "it",
            "quiet_hours_start": "21:00", "quiet_hours_end": "08:00", "time_zone": ""}
    data.update(overrides)
    return data


def test_a_future_birth_date_in_the_create_form_is_a_field_error(desk_client, site_a):
    response = desk_client.post(NEW, {"given_name": "Lia", "family_name": "Neri", "date_of_birth": "2999-01-01",
                                      "sex": "female", "language": "it", "home_site": site_a.pk})

    assert response.status_code == 200
    assert list(response.context["form"].errors) == ["date_of_birth"]
    assert not Patient.objects.exists()


def test_a_pre_1900_birth_date_in_the_edit_form_is_a_field_error(desk_client, mario):
    edit = reverse("console:patient_edit", args=[mario.pk])
    data = {k: v for k, v in desk_client.get(edit).context["form"].initial.items() if v is not None}
    data.update(home_site=mario.home_site_id, date_of_birth="1850-05-17")

    response = desk_client.post(edit, data)

    assert response.status_code == 200
    assert list(response.context["form"].errors) == ["date_of_birth"]
    mario.refresh_from_db()
    assert mario.date_of_birth == dt.date(1980, 5, 17)


def test_utc_is_offered_and_can_be_chosen(desk_client, mario):
    assert ("UTC", "UTC") in desk_client.get(_prefs(mario)).context["form"].fields["time_zone"].choices

    response = desk_client.post(_prefs(mario), _prefs_post(time_zone="UTC"))

    assert response.status_code == 302
    mario.refresh_from_db()
    assert mario.time_zone == "UTC"


@pytest.mark.parametrize("zone", ["UTC", "US/Eastern", "Japan"])
def test_a_patient_whose_zone_the_api_set_can_be_saved_from_the_console(desk_client, mario, zone):
    # Given a time zone set through the API (the model accepts any IANA name)
    patient_update(patient=mario, actor=None, source=ChangeSource.API, time_zone=zone)

    # When staff open the preferences and save them unchanged but for the quiet hours
    form = desk_client.get(_prefs(mario)).context["form"]
    response = desk_client.post(_prefs(mario), _prefs_post(time_zone=form.initial["time_zone"], quiet_hours_start="22:00"))

    # Then the page showed the zone as selected and the save went through keeping it
    assert (zone, zone) in form.fields["time_zone"].choices
    assert response.status_code == 302
    mario.refresh_from_db()
    assert (mario.time_zone, mario.quiet_hours_start) == (zone, dt.time(22, 0))


def test_an_unknown_time_zone_is_still_refused(desk_client, mario):
    response = desk_client.post(_prefs(mario), _prefs_post(time_zone="Mars/Olympus"))

    assert response.status_code == 200
    assert "time_zone" in response.context["form"].errors
