"""`Idempotency-Key` on POSTs that create: a retry replays, a different body is a 409."""

import threading

import pytest
from django.core.cache import cache
from django.db import connection

import clinics.api
from consent.models import ConsentEvent
from patients.models import ContactPoint, Patient
from tests.api.conftest import key_client
from tests.factories import PatientFactory, api_key

BODY = {"given_name": "Marco", "family_name": "Bianchi", "contact_points": [{"kind": "phone", "value": "3331234567"}]}


def test_same_key_and_body_replays_the_first_response_without_a_second_patient(api_a):
    first = api_a.post("/api/v1/patients/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="create-42")
    again = api_a.post("/api/v1/patients/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="create-42")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert again["Location"] == first["Location"]
    assert Patient.objects.count() == 1
    assert ContactPoint.objects.count() == 1


def test_same_key_with_another_body_is_409_naming_the_header(api_a):
    api_a.post("/api/v1/patients/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="create-42")

    response = api_a.post("/api/v1/patients/", {**BODY, "given_name": "Marta"}, format="json",
                          HTTP_IDEMPOTENCY_KEY="create-42")

    assert response.status_code == 409
    assert "Idempotency-Key" in response.json()["errors"]
    assert list(Patient.objects.values_list("given_name", flat=True)) == ["Marco"]


def test_key_order_and_spacing_of_the_body_do_not_matter(api_a):
    api_a.post("/api/v1/patients/", '{"given_name": "Marco", "family_name": "Bianchi"}',
               content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")

    again = api_a.post("/api/v1/patients/", '{"family_name":"Bianchi","given_name":"Marco"}',
                       content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")

    assert again.status_code == 201
    assert Patient.objects.count() == 1


def test_without_the_header_every_post_creates(api_a):
    api_a.post("/api/v1/patients/", BODY, format="json")
    api_a.post("/api/v1/patients/", BODY, format="json")

    assert Patient.objects.count() == 2


def test_keys_are_per_caller(api_a, site_a):
    other = key_client(api_key(sites=[site_a], can_write=True, name="Other")[1])

    api_a.post("/api/v1/patients/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    response = other.post("/api/v1/patients/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="shared")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Patient.objects.count() == 2


def test_a_failed_request_is_not_remembered(api_a):
    bad = api_a.post("/api/v1/patients/", {**BODY, "language": "xx"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert bad.status_code == 400

    fixed = api_a.post("/api/v1/patients/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert fixed.status_code == 201
    assert Patient.objects.count() == 1


def test_consent_grant_replays(api_a, patient_a):
    url = f"/api/v1/patients/{patient_a.pk}/consents/grant/"
    body = {"channel": "sms", "purpose": "care"}

    first = api_a.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="g1")
    again = api_a.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="g1")

    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert ConsentEvent.objects.count() == 1


def test_contact_point_create_and_merge_replay(api_a, patient_a, site_a):
    cp_url = f"/api/v1/patients/{patient_a.pk}/contact-points/"
    for _ in range(2):
        assert api_a.post(cp_url, {"kind": "email", "value": "g@example.org"}, format="json",
                          HTTP_IDEMPOTENCY_KEY="cp").status_code == 201
    loser = PatientFactory(home_site=site_a)
    merge_url = f"/api/v1/patients/{patient_a.pk}/merge/"
    for _ in range(2):
        assert api_a.post(merge_url, {"loser": loser.pk}, format="json", HTTP_IDEMPOTENCY_KEY="m").status_code == 200

    assert ContactPoint.objects.filter(patient=patient_a).count() == 1


def test_a_duplicate_arriving_while_the_first_runs_gets_409(api_a, monkeypatch):
    monkeypatch.setattr(clinics.api, "IDEMPOTENCY_WAIT_SECONDS", 0.1)
    # Given the first request holds the lock (still running elsewhere)
    request = type("R", (), {"user": _principal(api_a), "method": "POST", "path": "/api/v1/patients/"})()
    cache.add(clinics.api.idempotency_cache_key(request, "busy") + ":lock", "x", 60)

    response = api_a.post("/api/v1/patients/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="busy")

    assert response.status_code == 409
    assert "Idempotency-Key" in response.json()["errors"]
    assert not Patient.objects.exists()


def _principal(client):
    from clinics.selectors import api_key_find

    return api_key_find(client._credentials["HTTP_AUTHORIZATION"].removeprefix("Api-Key "))


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_blank_or_huge_key_is_400(api_a, key):
    response = api_a.post("/api/v1/patients/", BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["errors"]
    assert not Patient.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_create_one_patient(site_a):
    # Given two clients sending the same create at the same moment
    plaintext = api_key(sites=[site_a], can_write=True)[1]
    barrier = threading.Barrier(2)
    results = []

    def send():
        try:
            client = key_client(plaintext)
            barrier.wait()
            results.append(client.post("/api/v1/patients/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="race"))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(r.status_code for r in results) == [201, 201]
    assert len({r.json()["id"] for r in results}) == 1
    assert Patient.objects.count() == 1
