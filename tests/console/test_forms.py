import datetime as dt

from django.urls import reverse

from patients.models import ContactPoint, Patient, PatientChange

NEW = reverse("console:patient_new")


def _valid(site, **overrides):
    data = {
        "given_name": "Lucia", "family_name": "Ferrari", "date_of_birth": "1988-02-29", "sex": "female",
        "language": "it", "home_site": site.pk, "phone": "347 555 0101", "email": "Lucia@Example.org", "mrn": "MRN-5",
    }
    data.update(overrides)
    return data


def test_create_patient_stores_normalised_contacts_and_opens_patient_360(desk_client, site_a):
    response = desk_client.post(NEW, _valid(site_a))
    patient = Patient.objects.get(family_name="Ferrari")
    assert response.status_code == 302 and response["Location"] == reverse("console:patient", args=[patient.pk])
    assert patient.date_of_birth == dt.date(1988, 2, 29) and patient.home_site == site_a
    assert set(patient.contact_points.values_list("kind", "value")) == {
        ("phone", "+393475550101"), ("email", "lucia@example.org"),
    }
    assert patient.identifiers.get().value == "MRN-5"
    assert PatientChange.objects.filter(patient=patient, summary="Patient created", source="staff").exists()


def test_invalid_phone_in_the_create_form_is_a_field_error_and_stores_nothing(desk_client, site_a):
    response = desk_client.post(NEW, _valid(site_a, phone="123"))
    assert response.status_code == 200
    form = response.context["form"]
    assert list(form.errors) == ["phone"]
    assert "phone number" in form.errors["phone"][0]
    assert 'aria-invalid="true"' in response.content.decode()
    assert not Patient.objects.exists() and not ContactPoint.objects.exists()


def test_phone_is_read_in_the_home_sites_country(desk_client, front_desk, site_b):
    # given a user granted the Warsaw site too; when a Polish number is typed without a prefix
    from clinics.services import staff_grant_site

    staff_grant_site(user=front_desk, site=site_b)
    desk_client.post(NEW, _valid(site_b, phone="601 234 567", language="pl"))
    assert ContactPoint.objects.get(kind="phone").value == "+48601234567"


def test_create_form_offers_only_the_users_sites(desk_client, site_a, site_b):
    response = desk_client.post(NEW, _valid(site_b))
    assert "home_site" in response.context["form"].errors
    assert not Patient.objects.exists()


def test_missing_names_are_field_errors(desk_client, site_a):
    response = desk_client.post(NEW, _valid(site_a, given_name="", family_name=""))
    assert set(response.context["form"].errors) == {"given_name", "family_name"}


def test_clinician_cannot_create_patients(clinician_client, site_a):
    assert clinician_client.get(NEW).status_code == 403
    assert clinician_client.post(NEW, _valid(site_a)).status_code == 403
    assert not Patient.objects.exists()


def test_edit_profile_records_the_change(desk_client, front_desk, mario):
    edit = reverse("console:patient_edit", args=[mario.pk])
    form = desk_client.get(edit).context["form"]
    data = {k: v for k, v in form.initial.items() if v is not None}
    data.update(home_site=mario.home_site_id, preferred_name="Marietto", date_of_birth="1980-05-17")
    response = desk_client.post(edit, data)
    assert response.status_code == 302
    mario.refresh_from_db()
    assert mario.preferred_name == "Marietto"
    change = PatientChange.objects.filter(patient=mario).first()
    assert change.changes == {"preferred_name": ["", "Marietto"]} and change.actor == front_desk


def test_edit_preferences(desk_client, mario):
    prefs = reverse("console:patient_preferences", args=[mario.pk])
    response = desk_client.post(prefs, {
        "channel_1": "email", "channel_2": "sms", "channel_3": "", "language": "en",
        "quiet_hours_start": "20:30", "quiet_hours_end": "09:00", "time_zone": "Europe/London",
    })
    assert response.status_code == 302
    mario.refresh_from_db()
    assert mario.preferred_channels == ["email", "sms"]
    assert (mario.quiet_hours_start, mario.quiet_hours_end) == (dt.time(20, 30), dt.time(9, 0))
    assert (mario.language, mario.time_zone) == ("en", "Europe/London")
    assert PatientChange.objects.filter(patient=mario, summary="Contact preferences changed").exists()


def test_preferences_refuse_a_channel_twice(desk_client, mario):
    prefs = reverse("console:patient_preferences", args=[mario.pk])
    response = desk_client.post(prefs, {
        "channel_1": "sms", "channel_2": "sms", "language": "it", "quiet_hours_start": "21:00",
        "quiet_hours_end": "08:00",
    })
    assert "channel_2" in response.context["form"].errors
    mario.refresh_from_db()
    assert mario.preferred_channels == ["whatsapp", "sms", "email"]
