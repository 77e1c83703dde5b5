import datetime as dt

import pytest
from django.urls import reverse

from patients.services import patient_create

HOME = reverse("console:home")


@pytest.mark.parametrize("query", [
    "Rossi", "mario rossi", "ROSSI MARIO",
    "347 123 4567", "3471234567", "+39 347 1234567", "0039 347 123 4567", "+39-347-123-4567",
    "mario.rossi@example.org", "MARIO.ROSSI@EXAMPLE.ORG",
    "1980-05-17", "17/05/1980", "17.05.1980",
    "MRN-0042",
])
def test_search_finds_the_patient_by_name_phone_email_birth_date_or_mrn(desk_client, mario, giulia, query):
    # given two patients at the user's site; when searching
    response = desk_client.get(HOME, {"q": query})
    # then only the matching one is listed, linked to its Patient 360
    body = response.content.decode()
    assert response.status_code == 200
    assert reverse("console:patient", args=[mario.pk]) in body
    assert "Bianchi" not in body


def test_search_never_lists_a_patient_of_a_site_the_user_is_not_granted(desk_client, mario, anna):
    anna_url = reverse("console:patient", args=[anna.pk])
    for query in ("Nowak", "+48 601 234 567", "MRN-9001", "1975-01-30"):
        body = desk_client.get(HOME, {"q": query}).content.decode()
        assert anna_url not in body
        assert "0 patients match" in body


def test_empty_search_lists_every_patient_of_the_users_sites_only(desk_client, mario, giulia, anna):
    body = desk_client.get(HOME).content.decode()
    assert "Rossi" in body and "Bianchi" in body
    assert "Nowak" not in body


def test_site_filter_offers_only_the_users_sites_and_narrows_the_list(org, site_a, site_b, front_desk, client, mario):
    # given a second granted site with its own patient
    from clinics.services import staff_grant_site
    from tests.factories import SiteFactory

    napoli = SiteFactory(organization=org, name="Napoli", slug="napoli")
    staff_grant_site(user=front_desk, site=napoli)
    patient_create(home_site=napoli, given_name="Luca", family_name="Esposito", date_of_birth=dt.date(1990, 1, 1))
    client.force_login(front_desk)
    # when the list is filtered to Napoli
    body = client.get(HOME, {"site": napoli.pk}).content.decode()
    # then only Napoli's patient shows, and Warszawa is not even an option
    assert "Esposito" in body and "Rossi" not in body
    assert "Warszawa" not in body
    # and a site outside the grant is refused, not used
    body = client.get(HOME, {"site": site_b.pk}).content.decode()
    assert "Select a valid choice" in body


def test_live_search_returns_only_the_results_fragment(desk_client, mario):
    # given an htmx request from the search box (hx-target="#results")
    response = desk_client.get(HOME, {"q": "ross"}, headers={"HX-Request": "true", "HX-Target": "results"})
    body = response.content.decode()
    # then the response is the results partial, not a whole page
    assert response.status_code == 200
    assert "<html" not in body
    assert "Rossi" in body
    assert "HX-Request" in response["Vary"]


def test_search_page_works_without_javascript(desk_client, mario):
    # the page itself carries a plain GET form with a submit button, and the htmx attributes
    body = desk_client.get(HOME, {"q": "Rossi"}).content.decode()
    assert 'method="get"' in body and 'type="submit"' in body
    assert 'hx-trigger="keyup changed delay:300ms, search"' in body
    assert "htmx-2.0.11.min.js" in body
    assert 'value="Rossi"' in body


def test_results_are_paginated(desk_client, site_a):
    for i in range(30):
        patient_create(home_site=site_a, given_name=f"P{i:02d}", family_name="Verdi", date_of_birth=dt.date(1970, 1, 1))
    first = desk_client.get(HOME, {"q": "verdi"}).content.decode()
    second = desk_client.get(HOME, {"q": "verdi", "page": 2}).content.decode()
    assert "30 patients" in first
    assert "Page 1 of 2" in first and "Page 2 of 2" in second
    assert first.count("Verdi, P") == 25 and second.count("Verdi, P") == 5


def test_patient_list_query_count_does_not_grow_with_the_patients(desk_client, site_a, django_assert_max_num_queries):
    for i in range(30):
        patient_create(
            home_site=site_a, given_name=f"N{i}", family_name="Neri", date_of_birth=dt.date(1970, 1, 1),
            contact_points=[{"kind": "phone", "value": f"+39 347 000 {i:04d}"}, {"kind": "email", "value": f"n{i}@example.org"}],
            mrn=f"N-{i}",
        )
    with django_assert_max_num_queries(12):
        response = desk_client.get(HOME)
    assert response.content.decode().count("Neri, N") == 25
    with django_assert_max_num_queries(12):
        desk_client.get(HOME, {"q": "347 000 0007"})


def test_portal_user_cannot_open_the_console(client, db):
    from clinics.models import User

    client.force_login(User.objects.create_user(email="patient@example.org"))
    assert client.get(HOME).status_code == 403


def test_anonymous_user_is_sent_to_sign_in(client, db):
    response = client.get(HOME)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))
