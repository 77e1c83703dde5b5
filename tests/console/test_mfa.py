"""STAFF_MFA_REQUIRED: staff enrol an authenticator app before they reach patient data."""

import datetime as dt
import time

import pytest
import time_machine
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY, format_hotp_value, hotp_value
from django.urls import reverse

from tests.console.conftest import PASSWORD

HOME = reverse("console:home")
ACTIVATE = reverse("mfa_activate_totp")
# The start of a 30-second TOTP step, so the whole test runs inside one step.
STEP_START = dt.datetime(2026, 3, 2, 9, 0, 0, tzinfo=dt.UTC)


def totp_now(secret: str) -> str:
    """The code an authenticator app shows right now for `secret` (RFC 6238, 30 s, 6 digits)."""
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def open_activation(client) -> str:
    """Open the TOTP activation page (allauth first asks for the password again); return the secret."""
    response = client.get(ACTIVATE)
    if response.status_code == 302 and response["Location"].startswith(reverse("account_reauthenticate")):
        response = client.post(response["Location"], {"password": PASSWORD}, follow=True)
        assert response.redirect_chain[-1][0] == ACTIVATE
    assert response.status_code == 200
    assert "Set up your authenticator app" in response.content.decode()
    return client.session[SECRET_SESSION_KEY]


def sign_in(client, email):
    response = client.post(reverse("account_login"), {"login": email, "password": PASSWORD})
    assert response.status_code == 302, response.content.decode()[:500]
    return response


@pytest.fixture
def mfa_required(settings):
    settings.STAFF_MFA_REQUIRED = True


@time_machine.travel(STEP_START)
def test_staff_without_totp_is_sent_to_enrol_and_reaches_the_console_after(client, front_desk, mfa_required):
    # given front desk signed in with email and password
    sign_in(client, front_desk.email)
    # when they open the console, then they are sent to activate an authenticator app
    response = client.get(HOME)
    assert response.status_code == 302 and response["Location"] == ACTIVATE
    # and, once they confirm their password, the activation page shows a secret to scan
    secret = open_activation(client)
    # when they enter the code their app shows
    response = client.post(ACTIVATE, {"code": totp_now(secret)})
    assert response.status_code == 302
    assert Authenticator.objects.filter(user=front_desk, type=Authenticator.Type.TOTP).exists()
    # then the console opens
    assert client.get(HOME).status_code == 200


@time_machine.travel(STEP_START)
def test_a_wrong_code_does_not_activate_and_the_console_stays_closed(client, front_desk, mfa_required):
    sign_in(client, front_desk.email)
    secret = open_activation(client)
    wrong = f"{(int(totp_now(secret)) + 1) % 1_000_000:06d}"
    response = client.post(ACTIVATE, {"code": wrong})
    assert response.status_code == 200
    assert not Authenticator.objects.filter(user=front_desk).exists()
    assert client.get(HOME)["Location"] == ACTIVATE


def test_api_session_requests_are_redirected_too(client, front_desk, mfa_required):
    client.force_login(front_desk)
    response = client.get("/api/v1/patients/")
    assert response.status_code == 302 and response["Location"] == ACTIVATE


def test_htmx_requests_get_a_client_redirect(client, front_desk, mfa_required):
    client.force_login(front_desk)
    response = client.get(HOME, {"q": "x"}, headers={"HX-Request": "true", "HX-Target": "results"})
    assert response["HX-Redirect"] == ACTIVATE


def test_sign_in_pages_and_portal_users_are_not_affected(client, db, mfa_required):
    from clinics.models import User

    assert client.get(reverse("account_login")).status_code == 200
    client.force_login(User.objects.create_user(email="patient@example.org"))
    assert client.get(HOME).status_code == 403  # a portal account: refused, not asked to enrol


def test_nothing_is_required_when_the_setting_is_off(client, front_desk, settings):
    settings.STAFF_MFA_REQUIRED = False
    client.force_login(front_desk)
    assert client.get(HOME).status_code == 200


@time_machine.travel(STEP_START)
def test_enrolled_staff_sign_in_with_password_then_code(client, front_desk, mfa_required):
    # given front desk enrolled an authenticator app and signed out
    sign_in(client, front_desk.email)
    secret = open_activation(client)
    client.post(ACTIVATE, {"code": totp_now(secret)})
    client.post(reverse("account_logout"))
    # when they sign in with email and password, then a code is asked on our styled page
    response = client.post(reverse("account_login"), {"login": front_desk.email, "password": PASSWORD}, follow=True)
    body = response.content.decode()
    assert response.redirect_chain[-1][0] == reverse("mfa_authenticate")
    assert "Two-factor authentication" in body and 'class="card auth-card"' in body
    assert client.get(HOME).status_code == 302  # not signed in yet
    # when they enter the current code, then the console opens
    with time_machine.travel(STEP_START + dt.timedelta(seconds=30)):
        response = client.post(reverse("mfa_authenticate"), {"code": totp_now(secret)})
        assert response.status_code == 302 and response["Location"] == HOME
        assert client.get(HOME).status_code == 200
