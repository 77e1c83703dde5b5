import pytest


@pytest.mark.django_db
def test_the_front_door_leads_to_the_one_sign_in_page(client):
    # the site root goes to the console, which asks an anonymous visitor to sign in
    resp = client.get("/", follow=True)
    assert resp.status_code == 200
    assert resp.redirect_chain[-1][0].startswith("/accounts/login/")
    assert b'name="password"' in resp.content
