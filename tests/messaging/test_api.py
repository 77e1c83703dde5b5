import pytest

from messaging.models import Message, MessageTemplate
from tests.factories import PatientFactory, api_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def template():
    MessageTemplate.objects.create(name="note", purpose="care", language="en", body="Hello {{ first_name }}")
    MessageTemplate.objects.create(name="note", purpose="care", language="it", body="Ciao {{ first_name }}")


def _post(client, key, body, idem=None):
    headers = {"HTTP_AUTHORIZATION": f"Api-Key {key}"}
    if idem:
        headers["HTTP_IDEMPOTENCY_KEY"] = idem
    return client.post("/api/v1/messages/", body, content_type="application/json", **headers)


def test_send_with_same_idempotency_key_returns_the_same_message(client, patient, sandbox_accounts, template):
    _key, secret = api_key(sites=[patient.home_site], can_write=True)
    body = {"patient": patient.pk, "template": "note", "purpose": "care", "context": {"first_name": "Anna"}}
    first = _post(client, secret, body, idem="abc-1")
    second = _post(client, secret, body, idem="abc-1")
    assert first.status_code == 201, first.json()
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert Message.objects.count() == 1
    assert first.json()["channel"] == "sms" and first.json()["body"] == "Ciao Anna"


def test_send_with_reused_key_and_other_body_is_a_conflict(client, patient, sandbox_accounts, template):
    _key, secret = api_key(sites=[patient.home_site], can_write=True)
    body = {"patient": patient.pk, "template": "note", "purpose": "care", "context": {"first_name": "Anna"}}
    _post(client, secret, body, idem="abc-2")
    clash = _post(client, secret, {**body, "context": {"first_name": "Bea"}}, idem="abc-2")
    assert clash.status_code == 409
    assert "Idempotency-Key" in clash.json()["errors"]


def test_send_missing_context_names_the_field(client, patient, sandbox_accounts, template):
    _key, secret = api_key(sites=[patient.home_site], can_write=True)
    resp = _post(client, secret, {"patient": patient.pk, "template": "note", "purpose": "care"})
    assert resp.status_code == 400
    assert "context.first_name" in resp.json()["errors"]
    assert Message.objects.count() == 0


def test_send_to_patient_of_another_site_is_404(client, patient, sandbox_accounts, template, site_b):
    _key, secret = api_key(sites=[site_b], can_write=True)
    resp = _post(client, secret, {"patient": patient.pk, "template": "note", "purpose": "care",
                                  "context": {"first_name": "A"}})
    assert resp.status_code == 404
    assert Message.objects.count() == 0


def test_read_only_key_cannot_send(client, patient, sandbox_accounts, template):
    _key, secret = api_key(sites=[patient.home_site], can_write=False)
    resp = _post(client, secret, {"patient": patient.pk, "template": "note", "purpose": "care",
                                  "context": {"first_name": "A"}})
    assert resp.status_code == 403


def test_message_detail_shows_attempts_and_logs_access(client, patient, sandbox_accounts, template):
    from consent.models import AccessLog
    from messaging.dispatch import dispatch_once

    _key, secret = api_key(sites=[patient.home_site], can_write=True)
    created = _post(client, secret, {"patient": patient.pk, "template": "note", "purpose": "care",
                                     "context": {"first_name": "A"}}).json()
    dispatch_once()
    detail = client.get(f"/api/v1/messages/{created['id']}/", HTTP_AUTHORIZATION=f"Api-Key {secret}").json()
    assert detail["status"] == "delivered"
    assert detail["attempts"][0]["outcome"] == "accepted"
    assert AccessLog.objects.filter(patient=patient, what="message").count() == 1
    other = PatientFactory(home_site=patient.home_site)
    listed = client.get(f"/api/v1/messages/?patient={other.pk}", HTTP_AUTHORIZATION=f"Api-Key {secret}").json()
    assert listed["count"] == 0
    convs = client.get(f"/api/v1/conversations/?patient={patient.pk}", HTTP_AUTHORIZATION=f"Api-Key {secret}").json()
    assert convs["count"] == 1


def test_site_filters_follow_the_patients_current_home_site(client, patient, sandbox_accounts, template, site_b):
    # given a message to a patient who has since moved from the first site to site_b
    first_site = patient.home_site
    _key, secret = api_key(sites=[first_site, site_b], can_write=True)
    body = {"patient": patient.pk, "template": "note", "purpose": "care", "context": {"first_name": "Anna"}}
    assert _post(client, secret, body, idem="moved").status_code == 201
    type(patient).objects.filter(pk=patient.pk).update(home_site=site_b)
    auth = {"HTTP_AUTHORIZATION": f"Api-Key {secret}"}

    # then both lists file it under the site that sees it now, as scoping does
    for path in ("/api/v1/messages/", "/api/v1/conversations/"):
        assert client.get(path, {"site": site_b.pk}, **auth).json()["count"] == 1, path
        assert client.get(path, {"site": first_site.pk}, **auth).json()["count"] == 0, path


def test_listing_messages_logs_a_read_for_each_patient_on_the_page(client, patient, sandbox_accounts, template):
    from consent.models import AccessLog

    _key, secret = api_key(sites=[patient.home_site], can_write=True)
    body = {"patient": patient.pk, "template": "note", "purpose": "care", "context": {"first_name": "Anna"}}
    for idem in ("l1", "l2"):
        _post(client, secret, body, idem=idem)
    assert not AccessLog.objects.filter(what="messages").exists()

    response = client.get("/api/v1/messages/", HTTP_AUTHORIZATION=f"Api-Key {secret}")

    # two messages of one patient: one row for that patient
    assert response.status_code == 200 and response.json()["count"] == 2
    assert list(AccessLog.objects.filter(what="messages").values_list("patient_id", flat=True)) == [patient.pk]
