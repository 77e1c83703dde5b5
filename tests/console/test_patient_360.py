import json

import pytest
from django.urls import reverse

from consent.models import AccessLog, ConsentEvent
from patients.models import ContactPoint
from patients.services import patient_merge
from tests.factories import consent_event


def url(name, *args):
    return reverse(f"console:{name}", args=args)


def test_patient_360_shows_profile_contacts_consent_and_writes_the_access_log(desk_client, front_desk, mario):
    # given a patient with a granted SMS care consent
    consent_event(mario, "sms", "care")
    # when front desk opens Patient 360
    response = desk_client.get(url("patient", mario.pk), REMOTE_ADDR="10.1.2.3")
    body = response.content.decode()
    # then the read is logged, with who, what and where from
    row = AccessLog.objects.get(patient=mario)
    assert (row.actor, row.what, row.ip_address) == (front_desk, "view_360", "10.1.2.3")
    # and the page shows the profile, contact points, identifiers, consent matrix and the log entry
    assert response.status_code == 200
    assert "Mario Rossi" in body
    assert "+39 347 123 4567" in body and "mario.rossi@example.org" in body
    assert "MRN-0042" in body
    assert 'id="consent"' in body and "Granted" in body and "Not asked" in body
    log_section = body.split('id="access-log"')[1]
    assert "Patient 360 page" in log_section and "desk" in log_section and "10.1.2.3" in log_section
    assert response["Cache-Control"].startswith("max-age=0")


def test_every_opening_of_patient_360_is_logged(desk_client, mario):
    desk_client.get(url("patient", mario.pk))
    desk_client.get(url("patient", mario.pk))
    assert AccessLog.objects.filter(patient=mario, what="view_360").count() == 2


@pytest.mark.parametrize(("method", "name", "extra"), [
    ("get", "patient", ()),
    ("get", "patient_edit", ()),
    ("post", "patient_edit", ()),
    ("get", "patient_preferences", ()),
    ("get", "patient_export", ()),
    ("get", "contact_add", ()),
    ("post", "consent_add", ()),
    ("get", "patient_merge", ("mario",)),
    ("post", "patient_merge", ("mario",)),
])
def test_staff_of_site_a_get_404_on_a_site_b_patient(desk_client, mario, anna, method, name, extra):
    # given a patient of site B and staff granted only site A
    others = [mario.pk for _ in extra]
    # when any console page of that patient is requested
    response = getattr(desk_client, method)(url(name, anna.pk, *others))
    # then it does not exist for them, and nothing was logged or changed
    assert response.status_code == 404
    assert not AccessLog.objects.filter(patient=anna).exists()
    anna.refresh_from_db()
    assert not anna.is_merged


def test_merge_with_an_out_of_scope_duplicate_is_404(desk_client, mario, anna):
    assert desk_client.get(url("patient_merge", mario.pk, anna.pk)).status_code == 404
    assert desk_client.post(url("patient_merge", mario.pk, anna.pk)).status_code == 404


def test_export_downloads_json_and_logs_it(desk_client, front_desk, mario):
    response = desk_client.get(url("patient_export", mario.pk))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="patient-{mario.pk}-export.json"'
    data = json.loads(response.content)
    assert data["profile"]["family_name"] == "Rossi"
    assert "+393471234567" in {c["value"] for c in data["contact_points"]}
    assert AccessLog.objects.filter(patient=mario, what="export", actor=front_desk).exists()


def test_clinician_sees_patient_360_read_only(clinician_client, mario):
    body = clinician_client.get(url("patient", mario.pk)).content.decode()
    assert "Mario Rossi" in body
    assert url("patient_edit", mario.pk) not in body
    assert url("contact_add", mario.pk) not in body
    assert url("consent_add", mario.pk) not in body
    assert "Make primary" not in body and "Mark invalid" not in body


@pytest.mark.parametrize(("method", "name", "data"), [
    ("get", "patient_edit", None),
    ("post", "patient_edit", {"given_name": "X", "family_name": "Y", "sex": "unknown", "language": "it"}),
    ("get", "patient_preferences", None),
    ("post", "patient_preferences", {"channel_1": "sms", "language": "it", "quiet_hours_start": "22:00",
                                     "quiet_hours_end": "07:00"}),
    ("post", "contact_add", {"kind": "phone", "value": "+39 347 765 4321"}),
    ("post", "consent_add", {"channel": "sms", "purpose": "care", "action": "grant"}),
])
def test_clinician_cannot_change_the_record(clinician_client, mario, method, name, data):
    response = getattr(clinician_client, method)(url(name, mario.pk), data)
    assert response.status_code == 403
    mario.refresh_from_db()
    assert mario.given_name == "Mario"
    assert mario.contact_points.count() == 2
    assert not ConsentEvent.objects.filter(patient=mario).exists()


def test_clinician_cannot_change_a_contact_point(clinician_client, mario):
    phone = mario.contact_points.get(kind="phone")
    response = clinician_client.post(url("contact_invalidate", mario.pk, phone.pk), {"reason": "x"})
    assert response.status_code == 403
    phone.refresh_from_db()
    assert phone.is_valid


def test_staff_record_consent_on_the_patients_behalf(desk_client, front_desk, mario):
    # when front desk records a WhatsApp care opt-in given on paper
    response = desk_client.post(url("consent_add", mario.pk), {
        "channel": "whatsapp", "purpose": "care", "action": "grant", "note": "paper form",
    })
    # then the ledger has a staff-sourced grant, and the matrix and history show it
    assert response.status_code == 302
    event = ConsentEvent.objects.get(patient=mario)
    assert (event.channel, event.purpose, event.action, event.source, event.actor) == (
        "whatsapp", "care", "grant", "staff", front_desk)
    assert event.wording_version == "care/2026-01"
    body = desk_client.get(response["Location"]).content.decode()
    assert "paper form" in body and "Granted" in body


def test_staff_record_a_consent_withdrawal(desk_client, mario):
    consent_event(mario, "sms", "marketing")
    desk_client.post(url("consent_add", mario.pk), {"channel": "sms", "purpose": "marketing", "action": "revoke"})
    latest = ConsentEvent.objects.filter(patient=mario).order_by("-at", "-id").first()
    assert latest.action == "revoke" and latest.source == "staff"
    body = desk_client.get(url("patient", mario.pk)).content.decode()
    assert "Withdrawn" in body


def test_contact_point_actions_set_primary_invalidate_and_revalidate(desk_client, mario):
    # given a second phone
    desk_client.post(url("contact_add", mario.pk), {"kind": "phone", "value": "06 9876 5432", "label": "home"})
    second = mario.contact_points.get(value="+390698765432")
    assert not second.is_primary
    # when it is made primary
    desk_client.post(url("contact_primary", mario.pk, second.pk))
    second.refresh_from_db()
    assert second.is_primary
    assert not mario.contact_points.get(value="+393471234567").is_primary
    # when it is marked invalid (as an htmx request: the contacts section comes back)
    response = desk_client.post(url("contact_invalidate", mario.pk, second.pk), {"reason": "number not in service"},
                                headers={"HX-Request": "true", "HX-Target": "contacts"})
    second.refresh_from_db()
    assert (second.is_valid, second.invalid_reason) == (False, "number not in service")
    body = response.content.decode()
    assert '<section class="card" id="contacts"' in body and "<html" not in body and "Invalid" in body
    # and valid again
    response = desk_client.post(url("contact_revalidate", mario.pk, second.pk))
    assert response.status_code == 302 and response["Location"].endswith("#contacts")
    second.refresh_from_db()
    assert second.is_valid


def test_adding_an_invalid_phone_shows_the_error_and_stores_nothing(desk_client, mario):
    response = desk_client.post(url("contact_add", mario.pk), {"kind": "phone", "value": "12"})
    assert response.status_code == 200
    assert "phone number" in response.context["form"].errors["value"][0]
    assert mario.contact_points.count() == 2


def test_adding_a_contact_point_the_patient_already_has_is_a_field_error(desk_client, mario):
    response = desk_client.post(url("contact_add", mario.pk), {"kind": "phone", "value": "347 123 4567"})
    assert "already has" in response.context["form"].errors["value"][0]


def test_a_contact_point_of_another_patient_is_404(desk_client, mario, giulia):
    other = giulia.contact_points.first()
    assert desk_client.post(url("contact_primary", mario.pk, other.pk)).status_code == 404


def test_merged_patient_shows_a_banner_linking_to_the_survivor(desk_client, front_desk, mario, giulia):
    patient_merge(survivor=mario, loser=giulia, actor=front_desk)
    body = desk_client.get(url("patient", giulia.pk)).content.decode()
    assert "This record was merged into" in body
    assert f'href="{url("patient", mario.pk)}"' in body
    assert url("patient_edit", giulia.pk) not in body


def test_possible_duplicates_link_to_the_merge_page(desk_client, site_a, mario):
    from patients.services import patient_create

    twin = patient_create(home_site=site_a, given_name="Mario", family_name="Rossi",
                          date_of_birth=mario.date_of_birth, contact_points=[{"kind": "phone", "value": "3471234567"}])
    body = desk_client.get(url("patient", mario.pk)).content.decode()
    dup_section = body.split('id="duplicates"')[1].split("</section>")[0]
    assert url("patient_merge", mario.pk, twin.pk) in dup_section
    assert "same phone and date of birth" in dup_section


def test_possible_duplicates_at_a_site_the_user_cannot_see_stay_hidden(desk_client, site_b, mario):
    from patients.services import patient_create

    patient_create(home_site=site_b, given_name="Mario", family_name="Rossi", date_of_birth=mario.date_of_birth)
    body = desk_client.get(url("patient", mario.pk)).content.decode()
    assert "None found." in body.split('id="duplicates"')[1]


def test_contact_points_show_primary_verified_and_validity(desk_client, mario):
    ContactPoint.objects.filter(patient=mario, kind="email").update(is_verified=True)
    body = desk_client.get(url("patient", mario.pk)).content.decode()
    contacts = body.split('id="contacts"')[1].split("</section>")[0]
    assert "Primary" in contacts and "Verified" in contacts and "Not verified" in contacts and "Valid" in contacts
