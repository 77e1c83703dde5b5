"""The consent ledger and the access log through the API."""

import datetime as dt

import pytest
from django.utils import timezone

from consent.models import AccessLog, ConsentEvent, ConsentSource
from consent.services import consent_grant
from tests.factories import PatientFactory


def test_grant_through_api_is_in_the_ledger_with_source_api_and_the_key(api_a, write_key_a, patient_a):
    response = api_a.post(
        f"/api/v1/patients/{patient_a.pk}/consents/grant/",
        {"channel": "sms", "purpose": "care", "note": "signed at the front desk"}, format="json",
        REMOTE_ADDR="203.0.113.7",
    )

    assert response.status_code == 201, response.json()
    event = ConsentEvent.objects.get(patient=patient_a)
    assert (event.action, event.source, event.channel, event.purpose) == ("grant", ConsentSource.API, "sms", "care")
    assert event.api_key == write_key_a[0]
    assert event.actor is None
    assert event.actor_label == "API: EHR bridge A"
    assert event.ip_address == "203.0.113.7"
    assert event.wording_version == "care/2026-01"
    assert response.json()["id"] == event.pk


def test_revoke_through_api_changes_the_current_state(api_a, patient_a):
    consent_grant(patient=patient_a, channel="email", purpose="marketing", source=ConsentSource.STAFF)

    response = api_a.post(f"/api/v1/patients/{patient_a.pk}/consents/revoke/",
                          {"channel": "email", "purpose": "marketing"}, format="json")

    assert response.status_code == 201
    body = api_a.get(f"/api/v1/patients/{patient_a.pk}/consents/").json()
    state = next(s for s in body["current"] if (s["channel"], s["purpose"]) == ("email", "marketing"))
    assert state["granted"] is False
    assert state["source"] == "api"
    assert [e["action"] for e in body["history"]] == ["revoke", "grant"]


def test_staff_grant_records_the_staff_user_as_actor(staff_client_a, staff_a, patient_a):
    response = staff_client_a.post(f"/api/v1/patients/{patient_a.pk}/consents/grant/",
                                   {"channel": "whatsapp", "purpose": "care"}, format="json")

    assert response.status_code == 201
    event = ConsentEvent.objects.get(patient=patient_a)
    assert (event.actor, event.api_key, event.source) == (staff_a, None, "api")


def test_consent_overview_lists_every_channel_and_purpose(api_a, patient_a):
    body = api_a.get(f"/api/v1/patients/{patient_a.pk}/consents/").json()

    assert len(body["current"]) == 9
    assert all(s["granted"] is None for s in body["current"])
    assert body["history"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [({"channel": "fax", "purpose": "care"}, "channel"), ({"channel": "sms", "purpose": "spam"}, "purpose"),
     ({"purpose": "care"}, "channel"), ({"channel": "sms", "purpose": "care", "note": "n" * 301}, "note"),
     ({"channel": "sms", "purpose": "care", "at": "2999-01-01T00:00:00Z"}, "at")],
)
def test_bad_consent_input_is_400_naming_the_field_and_stores_nothing(api_a, patient_a, body, field):
    response = api_a.post(f"/api/v1/patients/{patient_a.pk}/consents/grant/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not ConsentEvent.objects.exists()


def test_consent_given_earlier_can_be_dated(api_a, patient_a):
    when = timezone.now() - dt.timedelta(days=3)

    api_a.post(f"/api/v1/patients/{patient_a.pk}/consents/grant/",
               {"channel": "sms", "purpose": "surveys", "at": when.isoformat()}, format="json")

    assert ConsentEvent.objects.get(patient=patient_a).at == when


def test_consent_on_a_merged_patient_is_409(api_a, site_a):
    loser = PatientFactory(home_site=site_a, merged_into=PatientFactory(home_site=site_a))

    response = api_a.post(f"/api/v1/patients/{loser.pk}/consents/grant/", {"channel": "sms", "purpose": "care"},
                          format="json")

    assert response.status_code == 409
    assert not ConsentEvent.objects.exists()


# --- the access log ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "what"),
    [("/api/v1/patients/{id}/", "api_detail"), ("/api/v1/patients/{id}/export/", "export"),
     ("/api/v1/patients/{id}/timeline/", "timeline"), ("/api/v1/patients/{id}/access-log/", "access_log"),
     ("/api/v1/patients/{id}/consents/", "consents"), ("/api/v1/patients/{id}/preferences/", "preferences"),
     ("/api/v1/patients/{id}/duplicates/", "duplicates"), ("/api/v1/patients/{id}/contact-points/", "contact_points")],
)
def test_every_read_writes_one_access_log_row_per_request(api_a, write_key_a, patient_a, path, what):
    url = path.format(id=patient_a.pk)

    api_a.get(url, REMOTE_ADDR="198.51.100.4")
    api_a.get(url, REMOTE_ADDR="198.51.100.4")

    rows = list(AccessLog.objects.filter(patient=patient_a))
    assert len(rows) == 2
    assert {(r.what, r.api_key_id, r.actor_id, r.ip_address, r.path) for r in rows} == {
        (what, write_key_a[0].pk, None, "198.51.100.4", url)
    }


def test_staff_reads_are_logged_with_the_staff_user(staff_client_a, staff_a, patient_a):
    staff_client_a.get(f"/api/v1/patients/{patient_a.pk}/")

    row = AccessLog.objects.get(patient=patient_a)
    assert (row.actor, row.api_key, row.what) == (staff_a, None, "api_detail")


def test_access_log_endpoint_lists_reads_newest_first_including_itself(api_a, patient_a):
    api_a.get(f"/api/v1/patients/{patient_a.pk}/")
    api_a.get(f"/api/v1/patients/{patient_a.pk}/export/")

    body = api_a.get(f"/api/v1/patients/{patient_a.pk}/access-log/").json()

    assert body["count"] == 3
    assert [r["what"] for r in body["results"]] == ["access_log", "export", "api_detail"]
    assert body["results"][0]["actor_label"] == "API: EHR bridge A"


def test_access_log_is_paginated(api_a, patient_a):
    for _ in range(4):
        api_a.get(f"/api/v1/patients/{patient_a.pk}/")

    body = api_a.get(f"/api/v1/patients/{patient_a.pk}/access-log/", {"page_size": 2}).json()

    assert body["count"] == 5
    assert len(body["results"]) == 2
    assert body["next"]


def test_failed_reads_are_not_logged(api_a, patient_a):
    api_a.get(f"/api/v1/patients/{patient_a.pk}/timeline/", {"limit": "lots"})

    assert not AccessLog.objects.exists()
