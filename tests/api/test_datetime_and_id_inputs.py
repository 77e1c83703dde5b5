"""Ids and date-times in the query string or body: out of range or without an offset is a 400 naming the
parameter, never a 500, and never a time silently read in the server's zone."""

import datetime as dt

import pytest

from consent.models import ConsentEvent
from messaging.models import Message

TOO_BIG = "99999999999999999999"  # past PostgreSQL's bigint and SQLite's integer


@pytest.mark.parametrize("url", ["/api/v1/messages/", "/api/v1/conversations/"])
@pytest.mark.parametrize("param", ["site", "patient"])
def test_an_id_filter_past_bigint_is_400_naming_it(api_a, url, param):
    response = api_a.get(url, {param: TOO_BIG})

    assert response.status_code == 400
    assert list(response.json()["errors"]) == [param]


@pytest.mark.parametrize("url", ["/api/v1/messages/", "/api/v1/conversations/"])
@pytest.mark.parametrize("value", ["0", "-3", "abc"])
def test_an_id_filter_that_is_no_id_is_400_naming_it(api_a, url, value):
    response = api_a.get(url, {"site": value})

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["site"]


@pytest.mark.parametrize("url", ["/api/v1/messages/", "/api/v1/conversations/"])
def test_an_id_filter_in_range_still_filters(api_a, site_a, patient_a, url):
    response = api_a.get(url, {"site": site_a.pk, "patient": patient_a.pk})

    assert response.status_code == 200
    assert response.json()["count"] == 0


# --- date-times in the query string -----------------------------------------------------------


@pytest.mark.parametrize("param", ["created_after", "created_before"])
@pytest.mark.parametrize(
    ("value", "reason"),
    [("0001-01-01T00:30:00", "UTC offset"), ("2026-03-10T09:30:00", "UTC offset"),
     ("0001-01-01T00:30:00+05:00", "out of range"), ("9999-12-31T23:30:00-05:00", "out of range"),
     ("2026-13-01T00:00:00Z", "valid"), ("yesterday", "valid")],
)
def test_a_message_date_filter_needs_an_offset_and_a_sane_range(api_a, param, value, reason):
    response = api_a.get("/api/v1/messages/", {param: value})

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == [param]
    assert reason in errors[param][0]


def test_a_message_date_filter_with_an_offset_works(api_a):
    response = api_a.get("/api/v1/messages/", {"created_after": "2026-03-10T10:30:00+01:00",
                                               "created_before": "2026-03-11T00:00:00Z"})

    assert response.status_code == 200


@pytest.mark.parametrize(("value", "reason"), [("2030-03-04T15:00:00", "UTC offset"),
                                               ("0001-01-01T00:30:00", "UTC offset"),
                                               ("0001-01-01T00:30:00Z", "out of range")])
def test_a_send_with_a_bad_not_before_is_400_naming_it(api_a, patient_a, value, reason):
    response = api_a.post("/api/v1/messages/", {"patient": patient_a.pk, "template": "note", "purpose": "care",
                                                "not_before": value}, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == ["not_before"]
    assert reason in errors["not_before"][0]
    assert not Message.objects.exists()


# --- the consent's `at` -----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["grant", "revoke"])
@pytest.mark.parametrize(
    ("at", "reason"),
    [("0001-01-01T00:30:00", "UTC offset"), ("2026-01-05T10:00:00", "UTC offset"),
     ("0001-01-01T00:30:00Z", "out of range"), ("0001-01-01T00:30:00+05:00", "out of range"),
     ("9999-12-31T23:59:00-05:00", "out of range"), ("2026-01-05", "UTC offset"), ("soon", "wrong format")],
)
def test_consent_at_needs_an_offset_and_a_sane_range(api_a, patient_a, action, at, reason):
    response = api_a.post(f"/api/v1/patients/{patient_a.pk}/consents/{action}/",
                          {"channel": "sms", "purpose": "care", "at": at}, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == ["at"]
    assert reason in errors["at"][0]
    assert not ConsentEvent.objects.exists()


def test_consent_at_with_an_offset_is_kept_as_that_instant(api_a, patient_a):
    response = api_a.post(f"/api/v1/patients/{patient_a.pk}/consents/grant/",
                          {"channel": "sms", "purpose": "care", "at": "2026-01-05T10:00:00+01:00"}, format="json")

    assert response.status_code == 201, response.json()
    assert ConsentEvent.objects.get().at == dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
