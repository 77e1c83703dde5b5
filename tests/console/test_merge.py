import datetime as dt

import pytest
from django.urls import reverse

from clinics.models import StaffRole
from patients.models import ContactPoint, PatientMerge
from patients.services import patient_create
from tests.factories import consent_event, staff_user


@pytest.fixture
def duplicate(site_a):
    """Mario registered twice: same mobile, another email and a second MRN."""
    return patient_create(
        home_site=site_a, given_name="Mario", family_name="Rossi", date_of_birth=dt.date(1980, 5, 17),
        contact_points=[{"kind": "phone", "value": "347 123 4567"}, {"kind": "email", "value": "mrossi@work.example"}],
        mrn="OLD-7",
    )


def test_merge_page_compares_both_records_side_by_side(desk_client, mario, duplicate):
    response = desk_client.get(reverse("console:patient_merge", args=[mario.pk, duplicate.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "mrossi@work.example" in body and "mario.rossi@example.org" in body
    assert "OLD-7" in body and "MRN-0042" in body
    assert 'method="post"' in body
    # and a link offers to keep the other record
    assert reverse("console:patient_merge", args=[duplicate.pk, mario.pk]) in body


def test_merge_through_the_console_moves_contact_points_and_marks_the_loser(desk_client, front_desk, mario, duplicate):
    consent_event(duplicate, "sms", "care")
    # when front desk confirms the merge
    response = desk_client.post(reverse("console:patient_merge", args=[mario.pk, duplicate.pk]))
    # then the survivor's 360 opens and holds the duplicate's contacts, identifiers and consent
    assert response.status_code == 302 and response["Location"] == reverse("console:patient", args=[mario.pk])
    duplicate.refresh_from_db()
    assert duplicate.merged_into == mario
    assert set(mario.contact_points.values_list("value", flat=True)) == {
        "+393471234567", "mario.rossi@example.org", "mrossi@work.example",
    }
    assert not ContactPoint.objects.filter(patient=duplicate).exists()
    assert set(mario.identifiers.values_list("value", flat=True)) == {"MRN-0042", "OLD-7"}
    assert PatientMerge.objects.get(loser=duplicate).actor == front_desk
    body = desk_client.get(response["Location"]).content.decode()
    assert "was merged into this record" in body
    assert "Granted" in body
    # and the duplicate no longer shows in search
    results = desk_client.get(reverse("console:home"), {"q": "rossi"}).content.decode()
    assert reverse("console:patient", args=[duplicate.pk]) not in results


def test_clinician_cannot_merge(clinician_client, mario, duplicate):
    url = reverse("console:patient_merge", args=[mario.pk, duplicate.pk])
    assert clinician_client.get(url).status_code == 403
    assert clinician_client.post(url).status_code == 403
    duplicate.refresh_from_db()
    assert not duplicate.is_merged


def test_admin_can_merge(client, site_a, mario, duplicate):
    client.force_login(staff_user(sites=[site_a], role=StaffRole.ADMIN, email="boss@example.org"))
    client.post(reverse("console:patient_merge", args=[mario.pk, duplicate.pk]))
    duplicate.refresh_from_db()
    assert duplicate.merged_into_id == mario.pk


def test_merging_an_already_merged_record_explains_the_conflict(desk_client, mario, duplicate, giulia):
    desk_client.post(reverse("console:patient_merge", args=[mario.pk, duplicate.pk]))
    response = desk_client.post(reverse("console:patient_merge", args=[giulia.pk, duplicate.pk]))
    assert response.status_code == 409
    assert "already merged" in response.content.decode()
    duplicate.refresh_from_db()
    assert duplicate.merged_into_id == mario.pk


def test_a_record_cannot_be_merged_into_itself(desk_client, mario):
    response = desk_client.post(reverse("console:patient_merge", args=[mario.pk, mario.pk]))
    assert response.status_code == 409
    mario.refresh_from_db()
    assert not mario.is_merged
