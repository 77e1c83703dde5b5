import pytest

from clinics.models import StaffRole
from tests.factories import staff_user

pytestmark = pytest.mark.django_db


def test_admin_login_form_cannot_bypass_allauth_and_its_second_factor(client, site_a):
    staff_user(sites=[site_a], role=StaffRole.ADMIN, email="boss@example.org", password="correct-horse-battery")
    # when someone posts a password straight to Django's admin login
    resp = client.post("/admin/login/", {"username": "boss@example.org", "password": "correct-horse-battery"})
    # then they are sent to the one sign-in (allauth: rate limits, TOTP) and are not signed in
    assert resp.status_code == 302 and resp.url.startswith("/accounts/login/")
    assert client.get("/console/").status_code == 302


def test_admin_requires_totp_enrolment_when_enforced(client, site_a, settings):
    settings.STAFF_MFA_REQUIRED = True
    user = staff_user(sites=[site_a], role=StaffRole.ADMIN)
    client.force_login(user)
    resp = client.get("/admin/")
    assert resp.status_code == 302 and "totp" in resp.url
