"""`Idempotency-Key` on POST /api/v1/messages/: the whole request is remembered with the message, so
a retry replays the first answer (201) and the same key with any other field is a 409."""

from unittest import mock

import pytest

import messaging.services
from messaging.models import Message, MessageTemplate
from tests.factories import api_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def template():
    MessageTemplate.objects.create(name="note", purpose="care", language="en", body="Hello {{ first_name }}")
    MessageTemplate.objects.create(name="note", purpose="care", language="it", body="Ciao {{ first_name }}")


@pytest.fixture
def secret(patient):
    return api_key(sites=[patient.home_site], can_write=True)[1]


@pytest.fixture
def body(patient):
    return {"patient": patient.pk, "template": "note", "purpose": "care", "context": {"first_name": "Anna"}}


def _post(client, secret, body, **headers):
    return client.post("/api/v1/messages/", body, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Api-Key {secret}", **headers)


def test_replay_answers_201_with_the_first_body(client, secret, body, sandbox_accounts, template):
    first = _post(client, secret, body, HTTP_IDEMPOTENCY_KEY="k-1")

    again = _post(client, secret, body, HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Message.objects.count() == 1


@pytest.mark.parametrize("change", [
    {"channel": "email"},
    {"urgent": True},
    {"not_before": "2031-05-04T09:00:00Z"},
], ids=["channel", "urgent", "not_before"])
def test_same_key_with_another_channel_urgency_or_time_is_409_naming_the_header(
    client, secret, body, sandbox_accounts, template, change
):
    first = _post(client, secret, body, HTTP_IDEMPOTENCY_KEY="k-2")

    clash = _post(client, secret, {**body, **change}, HTTP_IDEMPOTENCY_KEY="k-2")

    assert first.status_code == 201
    assert clash.status_code == 409, clash.json()
    assert "Idempotency-Key" in clash.json()["errors"]
    assert Message.objects.count() == 1


def test_same_request_spelled_differently_replays(client, secret, body, sandbox_accounts, template):
    first = _post(client, secret, {**body, "not_before": "2031-05-04T11:00:00+02:00"}, HTTP_IDEMPOTENCY_KEY="k-3")

    # Defaults spelled out, the same instant in another offset.
    again = _post(client, secret, {**body, "not_before": "2031-05-04T09:00:00Z", "urgent": False, "channel": None},
                  HTTP_IDEMPOTENCY_KEY="k-3")

    assert first.status_code == again.status_code == 201, again.json()
    assert again.json()["id"] == first.json()["id"]
    assert Message.objects.count() == 1


@pytest.mark.parametrize("header", ["", "   ", "x" * 151], ids=["empty", "blank", "too_long"])
def test_empty_blank_or_overlong_key_is_400_naming_the_header(client, secret, body, sandbox_accounts, template,
                                                               header):
    first = _post(client, secret, body, HTTP_IDEMPOTENCY_KEY=header)
    second = _post(client, secret, body, HTTP_IDEMPOTENCY_KEY=header)

    assert first.status_code == second.status_code == 400
    assert "Idempotency-Key" in first.json()["errors"]
    assert Message.objects.count() == 0


def test_without_the_header_every_post_queues_a_message(client, secret, body, sandbox_accounts, template):
    _post(client, secret, body)
    _post(client, secret, body)

    assert Message.objects.count() == 2


def _racing(client, secret, rival_body, key):
    """Patch the send pipeline so that, once past its idempotency checks and before its insert, the
    request is overtaken by a rival with the same key (as two concurrent requests would be).

    The rival runs on the same connection, inside the loser's transaction: when the loser answers
    409 its rollback takes the rival's row along, which another connection's would not."""
    real = messaging.services.may_contact_many
    state = {}

    def overtaken(*args, **kwargs):
        if "rival" not in state:
            state["rival"] = None
            state["rival"] = _post(client, secret, rival_body, HTTP_IDEMPOTENCY_KEY=key)
        return real(*args, **kwargs)

    return state, mock.patch("messaging.services.may_contact_many", autospec=True, side_effect=overtaken)


def test_losing_the_insert_race_to_another_body_is_409_naming_the_header(client, secret, body, sandbox_accounts,
                                                                          template):
    state, race = _racing(client, secret, {**body, "urgent": True}, "k-race")

    with race:
        loser = _post(client, secret, body, HTTP_IDEMPOTENCY_KEY="k-race")

    assert state["rival"].status_code == 201
    assert loser.status_code == 409, loser.json()
    assert "Idempotency-Key" in loser.json()["errors"]


def test_losing_the_insert_race_to_another_patient_is_409_naming_the_header(client, secret, body, patient,
                                                                             sandbox_accounts, template):
    from tests.factories import PatientFactory

    other = PatientFactory(home_site=patient.home_site)
    state, race = _racing(client, secret, {**body, "patient": other.pk}, "k-race-2")

    with race:
        loser = _post(client, secret, body, HTTP_IDEMPOTENCY_KEY="k-race-2")

    assert state["rival"].status_code == 201
    assert loser.status_code == 409, loser.json()
    assert "Idempotency-Key" in loser.json()["errors"]


def test_losing_the_insert_race_to_the_same_body_answers_the_same_message(client, secret, body, sandbox_accounts,
                                                                           template):
    state, race = _racing(client, secret, body, "k-race-3")

    with race:
        loser = _post(client, secret, body, HTTP_IDEMPOTENCY_KEY="k-race-3")

    assert state["rival"].status_code == loser.status_code == 201
    assert loser.json()["id"] == state["rival"].json()["id"]
    assert Message.objects.count() == 1
