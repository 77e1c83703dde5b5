"""Patients through the API: create, read, update, search, filters, merge; bad input stores nothing."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from consent.models import AccessLog
from patients.models import ChangeSource, ContactPoint, Patient, PatientChange, PatientIdentifier
from patients.services import contact_point_add, identifier_add
from tests.api.conftest import key_client
from tests.factories import PatientFactory, api_key

NEW_PATIENT = {
    "given_name": "Marco",
    "family_name": "Bianchi",
    "date_of_birth": "1975-03-02",
    "language": "it",
    "mrn": "MRN-0042",
    "contact_points": [
        {"kind": "phone", "value": "333 123 4567"},
        {"kind": "email", "value": "Marco.Bianchi@Example.org"},
    ],
}


def _nothing_stored():
    return (
        not Patient.objects.exists()
        and not ContactPoint.objects.exists()
        and not PatientIdentifier.objects.exists()
        and not PatientChange.objects.exists()
    )


# --- create -----------------------------------------------------------------------------------


def test_key_creates_patient_with_normalised_contact_points_and_mrn(api_a, site_a, write_key_a):
    response = api_a.post("/api/v1/patients/", {**NEW_PATIENT, "home_site": site_a.pk}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert response["Location"] == f"/api/v1/patients/{body['id']}/"
    assert body["home_site"] == site_a.pk
    assert body["mrn"] == "MRN-0042"
    assert {(c["kind"], c["value"], c["is_primary"]) for c in body["contact_points"]} == {
        ("phone", "+393331234567", True),
        ("email", "marco.bianchi@example.org", True),
    }
    change = PatientChange.objects.get(patient_id=body["id"])
    assert change.source == ChangeSource.API


def test_key_with_one_site_may_leave_out_home_site(api_a, site_a):
    response = api_a.post("/api/v1/patients/", {"given_name": "Lia", "family_name": "Neri"}, format="json")

    assert response.status_code == 201
    assert response.json()["home_site"] == site_a.pk
    assert response.json()["language"] == site_a.language  # the home site's language by default


def test_key_with_two_sites_must_name_home_site(site_a, site_b):
    client = key_client(api_key(sites=[site_a, site_b], can_write=True)[1])

    response = client.post("/api/v1/patients/", {"given_name": "Lia", "family_name": "Neri"}, format="json")

    assert response.status_code == 400
    assert "home_site" in response.json()["errors"]
    assert _nothing_stored()


def test_staff_must_pass_a_home_site(staff_client_a):
    response = staff_client_a.post("/api/v1/patients/", {"given_name": "Lia", "family_name": "Neri"}, format="json")

    assert response.status_code == 400
    assert "home_site" in response.json()["errors"]
    assert _nothing_stored()


def test_staff_cannot_create_in_a_site_outside_scope(staff_client_a, site_b):
    response = staff_client_a.post(
        "/api/v1/patients/", {"given_name": "Lia", "family_name": "Neri", "home_site": site_b.pk}, format="json"
    )

    assert response.status_code == 400
    assert "home_site" in response.json()["errors"]
    assert _nothing_stored()


def test_staff_creates_in_own_site_and_is_recorded_as_actor(staff_client_a, staff_a, site_a):
    response = staff_client_a.post(
        "/api/v1/patients/", {"given_name": "Lia", "family_name": "Neri", "home_site": site_a.pk}, format="json"
    )

    assert response.status_code == 201
    assert PatientChange.objects.get(patient_id=response.json()["id"]).actor == staff_a


def test_invalid_phone_is_400_naming_the_contact_point_and_stores_nothing(api_a):
    body = {**NEW_PATIENT, "contact_points": [{"kind": "phone", "value": "12"}]}

    response = api_a.post("/api/v1/patients/", body, format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["contact_points[0].value"]
    assert _nothing_stored()


def test_invalid_second_contact_point_rolls_back_the_patient_and_the_first(api_a):
    body = {**NEW_PATIENT, "contact_points": [
        {"kind": "email", "value": "ok@example.org"},
        {"kind": "whatsapp", "value": "not a number"},
    ]}

    response = api_a.post("/api/v1/patients/", body, format="json")

    assert response.status_code == 400
    assert "contact_points[1].value" in response.json()["errors"]
    assert _nothing_stored()


def test_invalid_email_is_400_naming_it(api_a):
    body = {**NEW_PATIENT, "contact_points": [{"kind": "email", "value": "not-an-email"}]}

    response = api_a.post("/api/v1/patients/", body, format="json")

    assert response.status_code == 400
    assert "contact_points[0].value" in response.json()["errors"]
    assert _nothing_stored()


def test_unknown_contact_kind_is_400_naming_it(api_a):
    body = {**NEW_PATIENT, "contact_points": [{"kind": "fax", "value": "+390612345678"}]}

    response = api_a.post("/api/v1/patients/", body, format="json")

    assert response.status_code == 400
    assert "contact_points[0].kind" in response.json()["errors"]
    assert _nothing_stored()


def test_unknown_language_is_400_naming_language(api_a):
    response = api_a.post("/api/v1/patients/", {**NEW_PATIENT, "language": "klingon"}, format="json")

    assert response.status_code == 400
    assert "language" in response.json()["errors"]
    assert _nothing_stored()


@pytest.mark.parametrize(
    ("field", "value"),
    [("given_name", "x" * 101), ("family_name", "y" * 101), ("notes", "n" * 5001), ("mrn", "m" * 101),
     ("time_zone", "Mars/Olympus"), ("date_of_birth", "31/31/2000"), ("preferred_channels", ["sms", "sms"]),
     ("preferred_channels", ["pigeon"]), ("sex", "other"), ("given_name", "")],
)
def test_invalid_field_is_400_naming_it_and_stores_nothing(api_a, field, value):
    response = api_a.post("/api/v1/patients/", {**NEW_PATIENT, field: value}, format="json")

    assert response.status_code == 400
    assert any(key.startswith(field) for key in response.json()["errors"]), response.json()
    assert _nothing_stored()


def test_longest_allowed_values_are_accepted(api_a):
    body = {**NEW_PATIENT, "given_name": "x" * 100, "notes": "n" * 5000}

    assert api_a.post("/api/v1/patients/", body, format="json").status_code == 201


@pytest.mark.parametrize("raw", ['{"given_name": "A",', "not json at all", "[1, 2", '{"given_name": "A"}}'])
def test_malformed_json_is_400_and_stores_nothing(api_a, raw):
    response = api_a.post("/api/v1/patients/", raw, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["status"] == 400
    assert _nothing_stored()


@pytest.mark.parametrize("body", ["[]", '"a string"', "null", "42"])
def test_json_that_is_not_an_object_is_400(api_a, body):
    response = api_a.post("/api/v1/patients/", body, content_type="application/json")

    assert response.status_code == 400
    assert _nothing_stored()


def test_null_bytes_are_400_not_500(api_a):
    response = api_a.post("/api/v1/patients/", {**NEW_PATIENT, "given_name": "Ma\x00rco"}, format="json")

    assert response.status_code == 400
    assert "given_name" in response.json()["errors"]


def test_same_contact_point_twice_in_one_body_stores_nothing(api_a):
    body = {**NEW_PATIENT, "contact_points": [
        {"kind": "phone", "value": "+39 333 123 4567"}, {"kind": "phone", "value": "3331234567"},
    ]}

    response = api_a.post("/api/v1/patients/", body, format="json")

    assert response.status_code == 409
    assert "contact_points[1].value" in response.json()["errors"]
    assert _nothing_stored()


# --- read, update -----------------------------------------------------------------------------


def test_detail_shows_profile_contacts_and_mrn(api_a, patient_a):
    contact_point_add(patient=patient_a, kind="phone", value="+39 06 1234 5678")
    identifier_add(patient=patient_a, system="mrn", value="A-1")

    body = api_a.get(f"/api/v1/patients/{patient_a.pk}/").json()

    assert body["given_name"] == "Giulia"
    assert body["mrn"] == "A-1"
    assert body["contact_points"][0]["value"] == "+390612345678"


def test_patch_updates_through_the_service_with_source_api(api_a, patient_a):
    response = api_a.patch(f"/api/v1/patients/{patient_a.pk}/", {"preferred_name": "Giuli", "language": "it"},
                           format="json")

    assert response.status_code == 200
    assert response.json()["preferred_name"] == "Giuli"
    change = PatientChange.objects.get(patient=patient_a)
    assert change.source == ChangeSource.API
    assert set(change.changes) == {"preferred_name", "language"}


@pytest.mark.parametrize(
    ("field", "value"), [("notes", "n" * 5001), ("language", "xx"), ("given_name", "g" * 101), ("time_zone", "Nowhere")]
)
def test_bad_patch_is_400_and_changes_nothing(api_a, patient_a, field, value):
    response = api_a.patch(f"/api/v1/patients/{patient_a.pk}/", {field: value, "preferred_name": "Changed"},
                           format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]
    patient_a.refresh_from_db()
    assert patient_a.preferred_name == ""
    assert not PatientChange.objects.exists()


def test_patch_cannot_move_patient_to_a_site_outside_scope(api_a, patient_a, site_b):
    response = api_a.patch(f"/api/v1/patients/{patient_a.pk}/", {"home_site": site_b.pk}, format="json")

    assert response.status_code == 400
    assert "home_site" in response.json()["errors"]
    patient_a.refresh_from_db()
    assert patient_a.home_site_id != site_b.pk


def test_patch_of_a_merged_patient_is_409(api_a, site_a):
    survivor = PatientFactory(home_site=site_a)
    loser = PatientFactory(home_site=site_a, merged_into=survivor)

    response = api_a.patch(f"/api/v1/patients/{loser.pk}/", {"given_name": "X"}, format="json")

    assert response.status_code == 409


def test_put_is_not_offered(api_a, patient_a):
    assert api_a.put(f"/api/v1/patients/{patient_a.pk}/", {"given_name": "X"}, format="json").status_code == 405


# --- list: pagination, filters, search --------------------------------------------------------


def test_list_is_paginated(api_a, site_a):
    PatientFactory.create_batch(5, home_site=site_a)

    first = api_a.get("/api/v1/patients/", {"page_size": 2}).json()
    third = api_a.get("/api/v1/patients/", {"page_size": 2, "page": 3}).json()

    assert first["count"] == 5
    assert len(first["results"]) == 2
    assert first["next"] and first["previous"] is None
    assert len(third["results"]) == 1 and third["next"] is None
    assert api_a.get("/api/v1/patients/", {"page": 9}).status_code == 404


def test_page_size_is_capped(api_a, site_a):
    PatientFactory.create_batch(3, home_site=site_a)

    assert api_a.get("/api/v1/patients/", {"page_size": 100000}).status_code == 200


def test_list_filters(site_a, site_b):
    client = key_client(api_key(sites=[site_a, site_b])[1])
    rome = PatientFactory(home_site=site_a, language="it", date_of_birth=dt.date(1990, 1, 2))
    warsaw = PatientFactory(home_site=site_b, language="pl", date_of_birth=dt.date(1985, 6, 7))
    identifier_add(patient=warsaw, system="mrn", value="W-77")

    def ids(**params):
        response = client.get("/api/v1/patients/", params)
        assert response.status_code == 200, response.json()
        return [p["id"] for p in response.json()["results"]]

    assert ids(site=site_a.pk) == [rome.pk]
    assert ids(language="pl") == [warsaw.pk]
    assert ids(date_of_birth="1990-01-02") == [rome.pk]
    assert ids(mrn="W-77") == [warsaw.pk]
    assert ids(mrn="nope") == []


@pytest.mark.parametrize(("param", "value"), [("site", "abc"), ("site", "9" * 30), ("language", "xx"),
                                               ("date_of_birth", "yesterday")])
def test_bad_filter_values_are_400_naming_the_filter(api_a, patient_a, param, value):
    response = api_a.get("/api/v1/patients/", {param: value})

    assert response.status_code == 400
    assert param in response.json()["errors"]


def test_merged_records_are_hidden_unless_asked(api_a, site_a):
    survivor = PatientFactory(home_site=site_a)
    loser = PatientFactory(home_site=site_a, merged_into=survivor)

    default = {p["id"] for p in api_a.get("/api/v1/patients/").json()["results"]}
    everything = {p["id"] for p in api_a.get("/api/v1/patients/", {"include_merged": "true"}).json()["results"]}

    assert default == {survivor.pk}
    assert everything == {survivor.pk, loser.pk}


@pytest.mark.parametrize("typed", ["+39 333 123 4567", "0039 333 1234567", "333 123 4567", "333-123-4567",
                                   "+393331234567", "(333) 1234567"])
def test_search_by_phone_in_any_format(api_a, patient_a, site_a, typed):
    contact_point_add(patient=patient_a, kind="phone", value="+39 333 123 4567")
    PatientFactory(home_site=site_a, given_name="Other")

    response = api_a.get("/api/v1/patients/", {"q": typed})

    assert [p["id"] for p in response.json()["results"]] == [patient_a.pk]


def test_search_by_name_email_and_birth_date(api_a, patient_a, site_a):
    contact_point_add(patient=patient_a, kind="email", value="giulia@example.org")
    PatientFactory(home_site=site_a, given_name="Paolo", family_name="Verdi", date_of_birth=dt.date(1970, 1, 1))

    def ids(q):
        return [p["id"] for p in api_a.get("/api/v1/patients/", {"q": q}).json()["results"]]

    assert ids("rossi giulia") == [patient_a.pk]
    assert ids("GIULIA@example.org") == [patient_a.pk]
    assert ids("17/05/1980") == [patient_a.pk]


def test_search_never_reaches_outside_scope(api_a, patient_b):
    contact_point_add(patient=patient_b, kind="phone", value="+48 501 234 567")

    assert api_a.get("/api/v1/patients/", {"q": "+48 501 234 567"}).json()["count"] == 0
    assert api_a.get("/api/v1/patients/", {"q": "Kowalska"}).json()["count"] == 0


def _list_queries(client) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get("/api/v1/patients/").status_code == 200
    return len(ctx.captured_queries)


def _patient_with_contacts(site, n):
    p = PatientFactory(home_site=site)
    contact_point_add(patient=p, kind="phone", value=f"+39 333 000 {n:04d}")
    contact_point_add(patient=p, kind="email", value=f"p{n}@example.org")
    identifier_add(patient=p, system="mrn", value=f"M{n}")
    return p


def test_list_query_count_does_not_grow_with_patients(api_a, site_a, django_assert_max_num_queries):
    for n in range(2):
        _patient_with_contacts(site_a, n)
    api_a.get("/api/v1/patients/")  # warm up: the key's last_used_at is written once a minute
    few = _list_queries(api_a)
    for n in range(2, 25):
        _patient_with_contacts(site_a, n)

    with django_assert_max_num_queries(few):
        response = api_a.get("/api/v1/patients/")

    assert response.json()["count"] == 25
    assert len(response.json()["results"][0]["contact_points"]) == 2


def test_staff_list_query_count_is_bounded(staff_client_a, site_a, django_assert_max_num_queries):
    for n in range(20):
        _patient_with_contacts(site_a, n)

    with django_assert_max_num_queries(12):
        response = staff_client_a.get("/api/v1/patients/")

    assert response.json()["count"] == 20


def test_list_and_detail_both_write_the_access_log(api_a, patient_a):
    api_a.get("/api/v1/patients/")
    assert AccessLog.objects.filter(patient=patient_a, what="api_list").count() == 1

    api_a.get(f"/api/v1/patients/{patient_a.pk}/")
    assert AccessLog.objects.filter(patient=patient_a, what="api_detail").count() == 1


# --- merge, duplicates, timeline, export --------------------------------------------------------


def test_merge_via_api_moves_contacts_and_marks_the_loser(api_a, site_a):
    survivor = PatientFactory(home_site=site_a, given_name="Mario", family_name="Rossi")
    loser = PatientFactory(home_site=site_a, given_name="Mario", family_name="Rosi")
    contact_point_add(patient=loser, kind="email", value="mario@example.org")

    response = api_a.post(f"/api/v1/patients/{survivor.pk}/merge/", {"loser": loser.pk}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["survivor"]["id"] == survivor.pk
    assert body["loser"] == loser.pk
    assert [c["value"] for c in body["survivor"]["contact_points"]] == ["mario@example.org"]
    loser.refresh_from_db()
    assert loser.merged_into_id == survivor.pk


def test_merge_twice_is_409(api_a, site_a):
    survivor, loser = PatientFactory(home_site=site_a), PatientFactory(home_site=site_a)
    api_a.post(f"/api/v1/patients/{survivor.pk}/merge/", {"loser": loser.pk}, format="json")

    response = api_a.post(f"/api/v1/patients/{survivor.pk}/merge/", {"loser": loser.pk}, format="json")

    assert response.status_code == 409


@pytest.mark.parametrize("loser", ["self", None, "abc", 10**30, -1])
def test_merge_with_bad_loser_is_400_naming_loser(api_a, patient_a, loser):
    response = api_a.post(f"/api/v1/patients/{patient_a.pk}/merge/",
                          {"loser": patient_a.pk if loser == "self" else loser}, format="json")

    assert response.status_code == 400
    assert "loser" in response.json()["errors"]


def test_duplicates_lists_only_visible_candidates(api_a, site_a, site_b):
    patient = PatientFactory(home_site=site_a, given_name="Luca", family_name="Ferri", date_of_birth=dt.date(1960, 1, 1))
    twin_a = PatientFactory(home_site=site_a, given_name="Luca", family_name="Ferri", date_of_birth=dt.date(1960, 1, 1))
    PatientFactory(home_site=site_b, given_name="Luca", family_name="Ferri", date_of_birth=dt.date(1960, 1, 1))

    body = api_a.get(f"/api/v1/patients/{patient.pk}/duplicates/").json()

    assert [(d["patient"]["id"], d["reason"]) for d in body] == [(twin_a.pk, "similar_name_and_birth_date")]


def test_timeline_lists_profile_changes_and_consent(api_a, patient_a):
    api_a.patch(f"/api/v1/patients/{patient_a.pk}/", {"pronouns": "she/her"}, format="json")
    api_a.post(f"/api/v1/patients/{patient_a.pk}/consents/grant/", {"channel": "sms", "purpose": "care"}, format="json")

    body = api_a.get(f"/api/v1/patients/{patient_a.pk}/timeline/", {"kinds": "profile,consent"}).json()

    assert [e["kind"] for e in body] == ["consent", "profile"]
    assert api_a.get(f"/api/v1/patients/{patient_a.pk}/timeline/", {"limit": 0}).status_code == 400


def test_export_contains_profile_contacts_and_consents(api_a, patient_a):
    contact_point_add(patient=patient_a, kind="email", value="giulia@example.org")

    body = api_a.get(f"/api/v1/patients/{patient_a.pk}/export/").json()

    assert body["format"] == "touchpoint.patient-export/1"
    assert body["profile"]["given_name"] == "Giulia"
    assert body["contact_points"][0]["value"] == "giulia@example.org"
    assert "consents" in body
