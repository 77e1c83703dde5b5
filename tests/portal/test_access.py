"""Who may use the portal and which record a request may reach."""

import pytest
from django.test import Client

from patients.models import Patient
from patients.services import contact_point_add, contact_point_invalidate, portal_account_ensure
from tests.factories import staff_user

pytestmark = pytest.mark.django_db

PAGES = ["/portal/", "/portal/profile/", "/portal/preferences/", "/portal/consents/", "/portal/consents/history/",
         "/portal/my-data/"]


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitor_is_sent_to_the_portal_sign_in(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/portal/login/?next=")


@pytest.mark.parametrize("path", PAGES)
def test_staff_user_cannot_use_the_portal(client, site_a, path):
    client.force_login(staff_user(sites=[site_a]))

    response = client.get(path)

    assert response.status_code == 403
    assert "/console/" in response.content.decode()


def test_superuser_cannot_use_the_portal(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser(email="root@example.org", password="x" * 12))

    assert client.get("/portal/").status_code == 403


@pytest.mark.parametrize("path", PAGES[1:])
def test_patient_pages_show_only_the_signed_in_patient(client_a, patient_a, patient_b, path):
    response = client_a.get(path)

    html = response.content.decode()
    assert response.status_code == 200
    assert "Bruno" not in html and "bruno@example.org" not in html


def test_patient_cannot_choose_another_patients_record(client_a, patient_b):
    response = client_a.post(f"/portal/patients/{patient_b.pk}/choose/")

    assert response.status_code == 404


def test_choosing_a_record_id_that_does_not_exist_is_404(client_a):
    assert client_a.post("/portal/patients/999999/choose/").status_code == 404


def test_session_holding_another_patients_id_does_not_open_it(client_a, patient_a, patient_b):
    # given a session tampered to point at someone else's record
    session = client_a.session
    session["portal_patient_id"] = patient_b.pk
    session.save()

    # then the portal still shows only the signed-in patient's own record
    html = client_a.get("/portal/profile/").content.decode()
    assert "Anna" in html and "Bruno" not in html


def test_parent_and_child_sharing_an_email_choose_whose_record_to_open(client, make_patient):
    # given a parent and a child sharing one email, hence one account
    parent = make_patient(email="family@example.org", given_name="Paola", family_name="Neri")
    child = make_patient(email="family@example.org", given_name="Piero", family_name="Neri")
    assert parent.portal_account == child.portal_account
    client.force_login(parent.portal_account)

    # when no record is chosen yet, pages send them to the list on the home page
    assert client.get("/portal/consents/")["Location"] == "/portal/"
    home = client.get("/portal/").content.decode()
    assert "Paola Neri" in home and "Piero Neri" in home

    # when they open the child's record, pages are about the child
    assert client.post(f"/portal/patients/{child.pk}/choose/").status_code == 302
    html = client.get("/portal/profile/").content.decode()
    assert "You are viewing the record of <strong>Piero Neri</strong>" in html


def test_merged_away_record_is_not_reachable(client, make_patient, site_a):
    survivor = make_patient(email="s@example.org", given_name="Sara")
    loser = make_patient(email="l@example.org", given_name="Lara")
    Patient.objects.filter(pk=loser.pk).update(merged_into=survivor)  # what patient_merge leaves behind
    client.force_login(loser.portal_account)

    assert client.post(f"/portal/patients/{loser.pk}/choose/").status_code == 404
    assert "No patient record is linked" in client.get("/portal/").content.decode()
    assert client.get("/portal/profile/")["Location"] == "/portal/"


def test_portal_pages_are_not_cached(client_a):
    response = client_a.get("/portal/profile/")

    assert "no-store" in response["Cache-Control"]


def test_account_of_another_patient_sees_nothing_of_patient_a(patient_a, patient_b):
    other = Client()
    other.force_login(patient_b.portal_account)

    assert other.post(f"/portal/patients/{patient_a.pk}/choose/").status_code == 404
    assert "Anna" not in other.get("/portal/").content.decode()


def test_an_address_the_clinic_marked_invalid_no_longer_opens_the_record(client_a, patient_a):
    # given the clinic finds Anna's email was mistyped: someone else reads that mailbox
    wrong = patient_a.contact_points.get(kind="email")
    contact_point_invalidate(contact_point=wrong, reason="mistyped: belongs to someone else")
    contact_point_add(patient=patient_a, kind="email", value="anna.rossi@example.org")

    # then the account on the old address, though signed in, reaches nothing of Anna's
    assert "Anna" not in client_a.get("/portal/").content.decode()
    assert client_a.get("/portal/profile/")["Location"] == "/portal/"
    assert client_a.post(f"/portal/patients/{patient_a.pk}/choose/").status_code == 404


def test_a_patient_signs_in_with_any_of_their_valid_addresses(client, make_patient):
    # given a patient with a primary and a second email address
    patient = make_patient(email="primary@example.org", given_name="Sara", linked=False)
    contact_point_add(patient=patient, kind="email", value="Second@Example.org")

    # when they ask for a code with the second one
    account = portal_account_ensure(email="second@example.org")

    # then that account opens their record
    assert account.email == "second@example.org"
    client.force_login(account)
    assert "Sara" in client.get("/portal/profile/").content.decode()


def test_asking_for_a_code_for_another_of_the_patients_addresses_takes_nothing_away(client_a, patient_a):
    # given Anna is signed in, and her record also holds a shared family address
    contact_point_add(patient=patient_a, kind="email", value="rossi.family@example.org")

    # when somebody asks for a sign-in code for the family address and never enters it
    Client().post("/portal/login/", {"email": "rossi.family@example.org"})

    # then Anna's own sign-in still opens her record
    assert "Anna" in client_a.get("/portal/profile/").content.decode()


def test_a_patient_cannot_switch_the_account_to_another_patients_address(client_a, patient_a, patient_b):
    # when Anna tries allauth's email page to add Bruno's address and make it her primary one
    assert client_a.get("/accounts/email/").status_code == 404
    assert client_a.post("/accounts/email/", {"action_add": "", "email": "bruno@example.org"}).status_code == 404
    assert client_a.post("/accounts/email/", {"action_primary": "", "email": "bruno@example.org"}).status_code == 404

    # then her account keeps its address and opens only her record
    patient_a.portal_account.refresh_from_db()
    assert patient_a.portal_account.email == "anna@example.org"
    html = client_a.get("/portal/").content.decode()
    assert "Anna" in html and "Bruno" not in html
