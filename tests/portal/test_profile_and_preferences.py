"""My profile and my contact preferences: edits go through patient_update, bad input stores nothing."""

import datetime as dt

import pytest

from patients.models import PatientChange

pytestmark = pytest.mark.django_db


def _prefs(**overrides):
    data = {"channel_1": "email", "channel_2": "sms", "channel_3": "whatsapp", "language": "it",
            "quiet_hours_start": "22:00", "quiet_hours_end": "07:30", "time_zone": "Europe/Warsaw"}
    data.update(overrides)
    return data


def test_profile_shows_my_details(client_a, patient_a):
    html = client_a.get("/portal/profile/").content.decode()

    assert "Anna Rossi" in html
    assert "anna@example.org" in html and "+39 333 123 4567" in html


def test_profile_edit_saves_preferred_name_and_pronouns_as_a_portal_change(client_a, patient_a):
    response = client_a.post("/portal/profile/", {"preferred_name": " Annie ", "pronouns": "she/her"})

    assert response.status_code == 302
    patient_a.refresh_from_db()
    assert (patient_a.preferred_name, patient_a.pronouns) == ("Annie", "she/her")
    change = PatientChange.objects.filter(patient=patient_a).first()
    assert change.source == "portal" and change.actor == patient_a.portal_account
    assert set(change.changes) == {"preferred_name", "pronouns"}


def test_profile_edit_too_long_shows_a_field_error_and_stores_nothing(client_a, patient_a):
    response = client_a.post("/portal/profile/", {"preferred_name": "x" * 101, "pronouns": ""})

    assert response.status_code == 200
    assert response.context["form"].errors["preferred_name"]
    patient_a.refresh_from_db()
    assert patient_a.preferred_name == ""


def test_preferences_are_saved_through_patient_update(client_a, patient_a):
    response = client_a.post("/portal/preferences/", _prefs())

    assert response.status_code == 302
    patient_a.refresh_from_db()
    assert patient_a.preferred_channels == ["email", "sms", "whatsapp"]
    assert patient_a.language == "it"
    assert (patient_a.quiet_hours_start, patient_a.quiet_hours_end) == (dt.time(22, 0), dt.time(7, 30))
    assert patient_a.time_zone == "Europe/Warsaw"
    change = PatientChange.objects.filter(patient=patient_a).first()
    assert change.source == "portal" and change.summary == "Contact preferences changed"


def test_preferences_form_shows_the_current_values(client_a, patient_a):
    form = client_a.get("/portal/preferences/").context["form"]

    assert [form[f].value() for f in ("channel_1", "channel_2", "channel_3")] == ["whatsapp", "sms", "email"]
    assert form["time_zone"].value() == ""


def test_bad_time_zone_shows_a_field_error_and_stores_nothing(client_a, patient_a):
    changes_before = PatientChange.objects.count()

    response = client_a.post("/portal/preferences/", _prefs(time_zone="Mars/Olympus_Mons"))

    assert response.status_code == 200
    assert response.context["form"].errors["time_zone"]
    assert 'aria-invalid="true"' in response.content.decode()
    patient_a.refresh_from_db()
    assert patient_a.time_zone == "" and patient_a.language == "en"
    assert PatientChange.objects.count() == changes_before


def test_duplicate_channels_show_a_field_error_and_store_nothing(client_a, patient_a):
    response = client_a.post("/portal/preferences/", _prefs(channel_2="email"))

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "channel_2" in errors and "channel_1" not in errors
    assert "pick each channel once" in response.content.decode()
    patient_a.refresh_from_db()
    assert patient_a.preferred_channels == ["whatsapp", "sms", "email"]


def test_unparseable_quiet_hours_show_a_field_error(client_a, patient_a):
    response = client_a.post("/portal/preferences/", _prefs(quiet_hours_start="25:99"))

    assert response.status_code == 200
    assert response.context["form"].errors["quiet_hours_start"]
    patient_a.refresh_from_db()
    assert patient_a.quiet_hours_start == dt.time(21, 0)
