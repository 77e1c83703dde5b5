"""Signing in to the portal with a one-time code, through the real allauth views."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from patients.selectors import portal_patients_for
from tests.factories import staff_user
from tests.portal.conftest import code_from_outbox

pytestmark = pytest.mark.django_db
User = get_user_model()


def _strip_csrf(html: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)


def test_patient_with_email_on_file_signs_in_by_code_without_an_account_made_beforehand(client, make_patient):
    # given a patient whose email is on file but who has no portal account yet
    make_patient(email="Carla.Verdi@Example.org", linked=False, given_name="Carla")
    assert not User.objects.filter(email="carla.verdi@example.org").exists()

    # when she asks for a code (typing her email in another case) and enters the code she was mailed
    response = client.post("/portal/login/", {"email": "  CARLA.verdi@example.ORG "})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/code/confirm/")
    code = code_from_outbox("carla.verdi@example.org")
    response = client.post("/accounts/login/code/confirm/", {"code": code}, follow=True)

    # then she lands on her portal home, signed in to a password-less account on her address
    assert response.redirect_chain[-1][0] == "/portal/"
    assert "Hello, Carla" in response.content.decode()
    assert not User.objects.get(email="carla.verdi@example.org").has_usable_password()


def test_sign_in_keeps_the_page_the_patient_asked_for(client, patient_a):
    response = client.get("/portal/consents/")
    assert response.status_code == 302
    assert response["Location"] == "/portal/login/?next=/portal/consents/"

    client.post("/portal/login/?next=/portal/consents/", {"email": "anna@example.org", "next": "/portal/consents/"})
    response = client.post("/accounts/login/code/confirm/?next=/portal/consents/",
                           {"code": code_from_outbox("anna@example.org"), "next": "/portal/consents/"})

    assert response.status_code == 302
    assert response["Location"] == "/portal/consents/"


def test_wrong_code_does_not_sign_in(client, patient_a):
    client.post("/portal/login/", {"email": "anna@example.org"})

    response = client.post("/accounts/login/code/confirm/", {"code": "WRONG1"})

    assert response.status_code == 200
    assert client.get("/portal/").status_code == 302  # still anonymous


def test_unknown_email_gets_the_same_response_and_no_account(client, patient_a):
    # given one known and one unknown email, each asked from a fresh browser
    known = Client().post("/portal/login/", {"email": "anna@example.org"}, follow=True)
    users_before = User.objects.count()
    unknown = Client().post("/portal/login/", {"email": "nobody@example.org"}, follow=True)

    # then both land on the same page, saying the same thing
    assert known.redirect_chain == unknown.redirect_chain
    assert _strip_csrf(known.content.decode()).replace("anna@example.org", "X") == \
        _strip_csrf(unknown.content.decode()).replace("nobody@example.org", "X")
    # and no account was made for the unknown address; it got a mail without a code
    assert User.objects.count() == users_before
    assert not User.objects.filter(email="nobody@example.org").exists()
    unknown_mail = [m for m in mail.outbox if m.to == ["nobody@example.org"]]
    assert len(unknown_mail) == 1
    assert "cannot sign in" in unknown_mail[0].body


def test_invalid_email_contact_point_does_not_get_an_account(client, make_patient):
    from patients.services import contact_point_invalidate

    patient = make_patient(email="bounced@example.org", linked=False)
    contact_point_invalidate(contact_point=patient.contact_points.get(), reason="bounced")

    client.post("/portal/login/", {"email": "bounced@example.org"})

    assert not User.objects.filter(email="bounced@example.org").exists()


def test_a_shared_email_links_every_patient_on_it(client, make_patient):
    parent = make_patient(email="family@example.org", linked=False, given_name="Paola")
    child = make_patient(email="family@example.org", linked=False, given_name="Piero")

    client.post("/portal/login/", {"email": "family@example.org"})
    client.post("/accounts/login/code/confirm/", {"code": code_from_outbox("family@example.org")})

    response = client.get("/portal/")
    assert "Paola" in response.content.decode() and "Piero" in response.content.decode()
    assert set(portal_patients_for(User.objects.get(email="family@example.org"))) == {parent, child}


def test_staff_email_gets_no_code_from_the_portal(client, site_a):
    staff = staff_user(sites=[site_a], email="desk@example.org")

    response = client.post("/portal/login/", {"email": "desk@example.org"})

    assert response.status_code == 302  # same answer as for anyone
    assert all("Your sign-in code is" not in m.body for m in mail.outbox if m.to == [staff.email])


def test_code_requests_are_rate_limited_per_email(patient_a):
    # given three code requests for one email within a minute, each from a fresh browser
    for _ in range(3):
        assert Client().post("/portal/login/", {"email": "anna@example.org"}).status_code == 302
    sent = len(mail.outbox)

    # when a fourth comes
    response = Client().post("/portal/login/", {"email": "anna@example.org"})

    # then it is refused and nothing is mailed
    assert response.status_code == 200
    assert "Too many" in response.content.decode()
    assert len(mail.outbox) == sent


def test_code_requests_are_rate_limited_for_unknown_emails_too():
    for _ in range(3):
        Client().post("/portal/login/", {"email": "ghost@example.org"})

    response = Client().post("/portal/login/", {"email": "ghost@example.org"})

    assert response.status_code == 200
    assert "Too many" in response.content.decode()


def test_login_page_renders_without_javascript(client):
    response = client.get("/portal/login/")

    html = response.content.decode()
    assert response.status_code == 200
    assert '<form method="post" action=""' in html
    assert 'name="email"' in html
