from django.urls import reverse

from tests.console.conftest import PASSWORD

LOGIN = reverse("account_login")


def test_staff_sign_in_with_email_and_password_lands_on_the_patient_search(client, front_desk):
    page = client.get(LOGIN).content.decode()
    assert 'class="card auth-card"' in page and 'autocomplete="current-password"' in page
    response = client.post(LOGIN, {"login": "DESK@example.org", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("console:home")
    body = client.get(reverse("console:home")).content.decode()
    # the console navigation: patients, two-factor settings and a sign-out form (POST, not a link)
    assert reverse("mfa_index") in body
    assert f'method="post" action="{reverse("account_logout")}"' in body
    assert reverse("admin:index") not in body  # front desk is not an administrator


def test_repeated_wrong_passwords_are_rate_limited(client, front_desk):
    for _ in range(5):
        response = client.post(LOGIN, {"login": front_desk.email, "password": "wrong-password"})
        assert "not correct" in response.content.decode()
    # the sixth attempt is refused even with the right password
    response = client.post(LOGIN, {"login": front_desk.email, "password": PASSWORD})
    assert response.status_code == 200
    assert "Too many failed login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_sign_out_is_a_post(desk_client):
    response = desk_client.post(reverse("account_logout"))
    assert response.status_code == 302
    assert desk_client.get(reverse("console:home")).status_code == 302


def test_navigation_marks_the_current_section_and_shows_admin_to_administrators(client, site_a):
    from clinics.models import StaffRole
    from tests.factories import staff_user

    client.force_login(staff_user(sites=[site_a], role=StaffRole.ADMIN, email="boss@example.org"))
    body = client.get(reverse("console:home")).content.decode()
    assert f'<a href="{reverse("console:home")}" aria-current="page">' in body
    assert reverse("console:inbox") in body and reverse("admin:index") in body
