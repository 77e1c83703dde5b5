"""Download my data, and the portal speaking the patient's language."""

import json

import pytest

from consent.models import AccessLog
from tests.factories import consent_event

pytestmark = pytest.mark.django_db


def test_export_is_a_json_attachment_with_my_consents_and_contact_points_only(client_a, patient_a, patient_b):
    consent_event(patient_a, "sms", "care")
    consent_event(patient_b, "email", "marketing")

    response = client_a.post("/portal/my-data/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith("attachment;")
    data = json.loads(response.content)
    assert data["profile"]["id"] == patient_a.pk
    assert [(c["channel"], c["purpose"]) for c in data["consents"]] == [("sms", "care")]
    assert {c["value"] for c in data["contact_points"]} == {"anna@example.org", "+393331234567"}
    text = response.content.decode()
    assert "bruno" not in text.lower() and "+393339876543" not in text


def test_export_is_recorded_in_the_access_log_with_the_patient_as_actor(client_a, patient_a):
    client_a.post("/portal/my-data/", REMOTE_ADDR="198.51.100.4")

    entry = AccessLog.objects.get(patient=patient_a)
    assert entry.what == "portal_export"
    assert entry.actor == patient_a.portal_account
    assert entry.ip_address == "198.51.100.4"


def test_export_page_itself_writes_no_log(client_a, patient_a):
    assert client_a.get("/portal/my-data/").status_code == 200
    assert not AccessLog.objects.exists()


def test_portal_speaks_the_patients_language(client, make_patient):
    patient = make_patient(email="giulia@example.org", given_name="Giulia", language="it")
    client.force_login(patient.portal_account)

    response = client.get("/portal/")

    assert response["Content-Language"] == "it"
    assert '<html lang="it">' in response.content.decode()


def test_language_switcher_wins_over_the_patients_language(client, make_patient):
    patient = make_patient(email="giulia@example.org", given_name="Giulia", language="it")
    client.force_login(patient.portal_account)

    client.post("/i18n/setlang/", {"language": "pl", "next": "/portal/"})
    response = client.get("/portal/")

    assert response["Content-Language"] == "pl"
