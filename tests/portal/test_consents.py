"""My consents: the matrix with its wording, one-click grant and withdraw, the history."""

import pytest

from consent.models import ConsentEvent
from consent.policy import may_contact
from consent.wording import current_wording
from tests.factories import consent_event

pytestmark = pytest.mark.django_db


def _switch(client, channel, purpose, action, version=None):
    return client.post("/portal/consents/", {
        "channel": channel, "purpose": purpose, "action": action,
        "wording_version": version or current_wording(purpose)[0],
    }, REMOTE_ADDR="203.0.113.7")


def test_consents_page_shows_every_channel_and_purpose_with_its_current_wording(client_a):
    html = client_a.get("/portal/consents/").content.decode()

    for purpose in ("care", "surveys", "marketing"):
        version, text = current_wording(purpose)
        assert version in html
        assert text.replace("'", "&#x27;") in html
        for channel in ("sms", "whatsapp", "email"):
            assert f'data-channel="{channel}" data-purpose="{purpose}"' in html


def test_withdraw_writes_a_portal_ledger_row_with_wording_version_actor_and_ip(client_a, patient_a):
    consent_event(patient_a, "sms", "care")
    assert may_contact(patient_a, "sms", "care")

    response = _switch(client_a, "sms", "care", "revoke")

    assert response.status_code == 302
    assert response["Location"] == "/portal/consents/#purpose-care"
    event = ConsentEvent.objects.filter(patient=patient_a).first()
    assert (event.channel, event.purpose, event.action, event.source) == ("sms", "care", "revoke", "portal")
    assert event.wording_version == current_wording("care")[0]
    assert event.actor == patient_a.portal_account
    assert event.ip_address == "203.0.113.7"
    assert not may_contact(patient_a, "sms", "care")


def test_grant_writes_a_portal_ledger_row_with_the_wording_shown(client_a, patient_a):
    response = _switch(client_a, "whatsapp", "surveys", "grant")

    assert response.status_code == 302
    event = ConsentEvent.objects.get(patient=patient_a)
    assert (event.channel, event.purpose, event.action, event.source) == ("whatsapp", "surveys", "grant", "portal")
    version, text = current_wording("surveys")
    assert (event.wording_version, event.wording_text) == (version, text)
    assert may_contact(patient_a, "whatsapp", "surveys")


def test_switch_shows_the_new_state_after_one_click(client_a, patient_a):
    _switch(client_a, "email", "marketing", "grant")

    html = client_a.get("/portal/consents/").content.decode()

    marker = 'data-channel="email" data-purpose="marketing"'
    button = html[html.rindex("<button", 0, html.index(marker)):html.index(marker)]
    assert 'aria-checked="true"' in button


def test_grant_against_an_outdated_wording_is_not_recorded(client_a, patient_a):
    response = _switch(client_a, "sms", "marketing", "grant", version="marketing/1999-01")

    assert response.status_code == 302
    assert not ConsentEvent.objects.filter(patient=patient_a).exists()
    assert "wording of this consent has changed" in client_a.get("/portal/consents/").content.decode()


def test_tampered_switch_is_refused_without_writing(client_a, patient_a):
    response = client_a.post("/portal/consents/", {"channel": "fax", "purpose": "care", "action": "grant",
                                                   "wording_version": "care/2026-01"})

    assert response.status_code == 302
    assert not ConsentEvent.objects.exists()


def test_history_lists_my_consent_events_only(client_a, patient_a, patient_b):
    _switch(client_a, "sms", "care", "grant")
    _switch(client_a, "sms", "care", "revoke")
    consent_event(patient_b, "email", "marketing")

    html = client_a.get("/portal/consents/history/").content.decode()

    assert html.count("<tr>") == 3  # header + two events
    assert "Withdrawn" in html and "Granted" in html
    assert "News and offers" not in html


def test_consents_page_reads_the_ledger_in_a_fixed_number_of_queries(client_a, patient_a, django_assert_max_num_queries):
    for channel in ("sms", "whatsapp", "email"):
        for purpose in ("care", "surveys", "marketing"):
            consent_event(patient_a, channel, purpose)

    with django_assert_max_num_queries(6):
        assert client_a.get("/portal/consents/").status_code == 200
