"""Every API response that carries a patient's full record writes an access-log row."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from consent.models import AccessLog
from tests.factories import PatientFactory


def _access_log_inserts(ctx) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries
            if q["sql"].lstrip().upper().startswith("INSERT") and "consent_accesslog" in q["sql"]]


def test_list_logs_every_patient_on_the_page_with_who_and_from_where(api_a, site_a, patient_a, patient_b):
    # given two more patients of site A, so a page of two leaves one out
    PatientFactory(home_site=site_a, family_name="Zeta")
    PatientFactory(home_site=site_a, family_name="Abate")

    response = api_a.get("/api/v1/patients/", {"page_size": 2}, REMOTE_ADDR="203.0.113.9")

    assert response.status_code == 200
    shown = [p["id"] for p in response.json()["results"]]
    rows = list(AccessLog.objects.all())
    assert sorted(r.patient_id for r in rows) == sorted(shown)
    assert patient_b.pk not in {r.patient_id for r in rows}  # another site's patient is never listed
    assert {(r.what, r.actor_label, r.ip_address, r.actor_id) for r in rows} == {
        ("api_list", "API: EHR bridge A", "203.0.113.9", None)
    }
    assert all(r.path == "/api/v1/patients/?page_size=2" and r.api_key_id for r in rows)
    assert rows[0].what_label == "API: patient list"


def test_list_logs_the_page_in_one_insert(api_a, site_a):
    for n in range(5):
        PatientFactory(home_site=site_a, family_name=f"Rossi{n}")

    with CaptureQueriesContext(connection) as ctx:
        response = api_a.get("/api/v1/patients/")

    assert response.json()["count"] == 5
    assert len(_access_log_inserts(ctx)) == 1
    assert AccessLog.objects.filter(what="api_list").count() == 5


def test_list_logs_only_the_filtered_patients(api_a, site_a, patient_a):
    PatientFactory(home_site=site_a, given_name="Paolo", family_name="Verdi")

    response = api_a.get("/api/v1/patients/", {"q": "Rossi"})

    assert [p["id"] for p in response.json()["results"]] == [patient_a.pk]
    assert list(AccessLog.objects.values_list("patient_id", flat=True)) == [patient_a.pk]


def test_empty_list_logs_nothing(api_a, patient_b):
    response = api_a.get("/api/v1/patients/")

    assert response.json()["count"] == 0
    assert not AccessLog.objects.exists()


def test_staff_list_names_the_staff_user(staff_client_a, staff_a, patient_a):
    staff_client_a.get("/api/v1/patients/")

    row = AccessLog.objects.get(patient=patient_a)
    assert (row.what, row.actor, row.api_key) == ("api_list", staff_a, None)


def test_create_logs_the_returned_record(api_a, site_a):
    response = api_a.post("/api/v1/patients/", {"given_name": "Lia", "family_name": "Neri"}, format="json")

    assert response.status_code == 201
    row = AccessLog.objects.get()
    assert (row.patient_id, row.what, row.actor_label) == (response.json()["id"], "api_detail", "API: EHR bridge A")


def test_patch_logs_the_returned_record(api_a, patient_a):
    response = api_a.patch(f"/api/v1/patients/{patient_a.pk}/", {"preferred_name": "Giuli"}, format="json")

    assert response.status_code == 200
    assert list(AccessLog.objects.values_list("patient_id", "what")) == [(patient_a.pk, "api_detail")]


def test_preferences_patch_logs_the_returned_preferences(api_a, patient_a):
    response = api_a.patch(f"/api/v1/patients/{patient_a.pk}/preferences/", {"language": "it"}, format="json")

    assert response.status_code == 200
    assert list(AccessLog.objects.values_list("patient_id", "what")) == [(patient_a.pk, "preferences")]


def test_merge_logs_the_returned_survivor(api_a, site_a):
    survivor = PatientFactory(home_site=site_a, given_name="Mario", family_name="Rossi")
    loser = PatientFactory(home_site=site_a, given_name="Mario", family_name="Rosi")

    response = api_a.post(f"/api/v1/patients/{survivor.pk}/merge/", {"loser": loser.pk}, format="json")

    assert response.status_code == 200, response.json()
    assert list(AccessLog.objects.values_list("patient_id", "what")) == [(survivor.pk, "api_detail")]


@pytest.mark.parametrize("body", [{"given_name": ""}, {"home_site": 999999}])
def test_a_refused_write_logs_nothing(api_a, patient_a, body):
    response = api_a.patch(f"/api/v1/patients/{patient_a.pk}/", body, format="json")

    assert response.status_code == 400
    assert not AccessLog.objects.exists()
