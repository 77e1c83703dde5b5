"""Contact points and contact preferences of one patient through the API."""

import pytest

from consent.models import AccessLog
from patients.models import ChangeSource, ContactPoint, PatientChange
from patients.services import contact_point_add
from tests.factories import PatientFactory


def test_add_contact_point_normalises_and_records_the_change(api_a, patient_a):
    response = api_a.post(f"/api/v1/patients/{patient_a.pk}/contact-points/",
                          {"kind": "whatsapp", "value": "333 123 4567", "label": "mobile"}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["value"] == "+393331234567"
    assert response.json()["is_primary"] is True
    assert PatientChange.objects.get(patient=patient_a).source == ChangeSource.API


def test_add_invalid_phone_is_400_naming_value_and_stores_nothing(api_a, patient_a):
    response = api_a.post(f"/api/v1/patients/{patient_a.pk}/contact-points/", {"kind": "phone", "value": "123"},
                          format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["value"]
    assert not ContactPoint.objects.exists()
    assert not PatientChange.objects.exists()


def test_add_landline_as_whatsapp_is_400(api_a, patient_a):
    response = api_a.post(f"/api/v1/patients/{patient_a.pk}/contact-points/",
                          {"kind": "whatsapp", "value": "+39 06 1234 5678"}, format="json")

    assert response.status_code == 400
    assert "value" in response.json()["errors"]
    assert not ContactPoint.objects.exists()


def test_add_existing_contact_point_is_409(api_a, patient_a):
    contact_point_add(patient=patient_a, kind="email", value="giulia@example.org")

    response = api_a.post(f"/api/v1/patients/{patient_a.pk}/contact-points/",
                          {"kind": "email", "value": "GIULIA@example.org"}, format="json")

    assert response.status_code == 409
    assert "value" in response.json()["errors"]
    assert ContactPoint.objects.count() == 1


def test_add_to_a_merged_patient_is_409(api_a, site_a):
    loser = PatientFactory(home_site=site_a, merged_into=PatientFactory(home_site=site_a))

    response = api_a.post(f"/api/v1/patients/{loser.pk}/contact-points/",
                          {"kind": "email", "value": "x@example.org"}, format="json")

    assert response.status_code == 409
    assert not ContactPoint.objects.exists()


def test_list_contact_points_is_logged(api_a, patient_a):
    contact_point_add(patient=patient_a, kind="phone", value="+39 333 123 4567")

    response = api_a.get(f"/api/v1/patients/{patient_a.pk}/contact-points/")

    assert [c["value"] for c in response.json()] == ["+393331234567"]
    assert AccessLog.objects.filter(patient=patient_a, what="contact_points").exists()


def test_set_primary_invalidate_and_revalidate(api_a, patient_a):
    first = contact_point_add(patient=patient_a, kind="phone", value="+39 333 123 4567")
    second = contact_point_add(patient=patient_a, kind="phone", value="+39 333 765 4321")
    base = f"/api/v1/patients/{patient_a.pk}/contact-points/{second.pk}"

    assert api_a.post(f"{base}/set-primary/").json()["is_primary"] is True
    first.refresh_from_db()
    assert first.is_primary is False

    assert api_a.post(f"{base}/invalidate/", {}, format="json").status_code == 400  # reason is required
    invalid = api_a.post(f"{base}/invalidate/", {"reason": "Twilio 21211"}, format="json").json()
    assert (invalid["is_valid"], invalid["invalid_reason"]) == (False, "Twilio 21211")

    valid = api_a.post(f"{base}/revalidate/").json()
    assert (valid["is_valid"], valid["invalid_reason"]) == (True, "")
    assert PatientChange.objects.filter(patient=patient_a, source=ChangeSource.API).count() == 3


def test_contact_point_of_another_patient_is_404(api_a, patient_a, site_a):
    other = PatientFactory(home_site=site_a)
    cp = contact_point_add(patient=other, kind="email", value="o@example.org")

    response = api_a.post(f"/api/v1/patients/{patient_a.pk}/contact-points/{cp.pk}/invalidate/",
                          {"reason": "bounced"}, format="json")

    assert response.status_code == 404
    cp.refresh_from_db()
    assert cp.is_valid


def test_contact_point_actions_need_write_rights(read_only_api_a, patient_a):
    cp = contact_point_add(patient=patient_a, kind="email", value="g@example.org")

    response = read_only_api_a.post(f"/api/v1/patients/{patient_a.pk}/contact-points/{cp.pk}/invalidate/",
                                    {"reason": "x"}, format="json")

    assert response.status_code == 403
    cp.refresh_from_db()
    assert cp.is_valid


# --- preferences ------------------------------------------------------------------------------


def test_get_preferences_shows_effective_time_zone_and_is_logged(api_a, patient_a):
    body = api_a.get(f"/api/v1/patients/{patient_a.pk}/preferences/").json()

    assert body["preferred_channels"] == ["whatsapp", "sms", "email"]
    assert body["time_zone"] == ""
    assert body["effective_time_zone"] == "Europe/Rome"
    assert AccessLog.objects.filter(patient=patient_a, what="preferences").exists()


def test_patch_preferences(api_a, patient_a):
    response = api_a.patch(
        f"/api/v1/patients/{patient_a.pk}/preferences/",
        {"preferred_channels": ["email", "sms"], "quiet_hours_start": "22:00", "quiet_hours_end": "07:30",
         "time_zone": "America/New_York", "language": "pl"},
        format="json",
    )

    assert response.status_code == 200, response.json()
    patient_a.refresh_from_db()
    assert patient_a.preferred_channels == ["email", "sms"]
    assert str(patient_a.quiet_hours_end) == "07:30:00"
    assert (patient_a.time_zone, patient_a.language) == ("America/New_York", "pl")
    change = PatientChange.objects.get(patient=patient_a)
    assert change.source == ChangeSource.API
    assert change.summary == "Contact preferences changed"


@pytest.mark.parametrize(
    ("field", "value"),
    [("preferred_channels", ["sms", "sms"]), ("preferred_channels", ["fax"]), ("preferred_channels", "sms"),
     ("time_zone", "Europe/Atlantis"), ("language", "de"), ("quiet_hours_start", "25:00")],
)
def test_bad_preferences_are_400_naming_the_field_and_change_nothing(api_a, patient_a, field, value):
    response = api_a.patch(f"/api/v1/patients/{patient_a.pk}/preferences/", {field: value, "language": "it"}
                           if field != "language" else {field: value}, format="json")

    assert response.status_code == 400
    assert any(key.startswith(field) for key in response.json()["errors"]), response.json()
    patient_a.refresh_from_db()
    assert patient_a.language == "en"
    assert not PatientChange.objects.exists()


def test_bad_channel_is_named_with_its_index(api_a, patient_a):
    response = api_a.patch(f"/api/v1/patients/{patient_a.pk}/preferences/",
                           {"preferred_channels": ["sms", "fax"]}, format="json")

    assert list(response.json()["errors"]) == ["preferred_channels[1]"]
