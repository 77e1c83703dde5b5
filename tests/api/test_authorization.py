"""Who may call the API and which patients they reach: outside scope is a 404, never a 403."""

import pytest
from rest_framework.test import APIClient

from clinics.models import StaffRole
from clinics.services import api_key_revoke
from consent.models import AccessLog, ConsentEvent
from patients.models import Patient
from patients.selectors import portal_patients_for
from patients.services import contact_point_add, portal_account_ensure
from tests.api.conftest import key_client
from tests.factories import PatientFactory, api_key, staff_user

READ_PATHS = [
    "/api/v1/patients/{id}/",
    "/api/v1/patients/{id}/export/",
    "/api/v1/patients/{id}/timeline/",
    "/api/v1/patients/{id}/duplicates/",
    "/api/v1/patients/{id}/preferences/",
    "/api/v1/patients/{id}/consents/",
    "/api/v1/patients/{id}/access-log/",
    "/api/v1/patients/{id}/contact-points/",
]


@pytest.mark.parametrize("path", READ_PATHS)
def test_api_key_of_site_a_gets_404_for_every_read_of_a_site_b_patient(api_a, patient_b, path):
    response = api_a.get(path.format(id=patient_b.pk))

    assert response.status_code == 404
    assert response.json()["status"] == 404
    assert not AccessLog.objects.filter(patient=patient_b).exists()


@pytest.mark.parametrize("path", READ_PATHS)
def test_api_key_of_site_a_reads_its_own_patient(api_a, patient_a, path):
    assert api_a.get(path.format(id=patient_a.pk)).status_code == 200


@pytest.mark.parametrize("path", READ_PATHS)
def test_staff_of_site_a_gets_404_for_a_site_b_patient(staff_client_a, patient_a, patient_b, path):
    assert staff_client_a.get(path.format(id=patient_a.pk)).status_code == 200
    assert staff_client_a.get(path.format(id=patient_b.pk)).status_code == 404


def test_writes_to_a_patient_outside_scope_are_404_and_change_nothing(api_a, patient_a, patient_b):
    pid = patient_b.pk

    responses = [
        api_a.patch(f"/api/v1/patients/{pid}/", {"given_name": "Hacked"}, format="json"),
        api_a.patch(f"/api/v1/patients/{pid}/preferences/", {"language": "it"}, format="json"),
        api_a.post(f"/api/v1/patients/{pid}/consents/grant/", {"channel": "sms", "purpose": "care"}, format="json"),
        api_a.post(f"/api/v1/patients/{pid}/contact-points/", {"kind": "email", "value": "x@example.org"}, format="json"),
        api_a.post(f"/api/v1/patients/{pid}/merge/", {"loser": patient_a.pk}, format="json"),
    ]

    assert [r.status_code for r in responses] == [404] * 5
    patient_b.refresh_from_db()
    assert patient_b.given_name == "Anna"
    assert not ConsentEvent.objects.filter(patient=patient_b).exists()
    assert not patient_b.contact_points.exists()
    assert Patient.objects.filter(merged_into__isnull=False).count() == 0


def test_merge_with_a_loser_outside_scope_is_404_naming_loser(api_a, patient_a, patient_b):
    response = api_a.post(f"/api/v1/patients/{patient_a.pk}/merge/", {"loser": patient_b.pk}, format="json")

    assert response.status_code == 404
    assert "loser" in response.json()["errors"]
    patient_b.refresh_from_db()
    assert patient_b.merged_into_id is None


def test_list_shows_only_patients_of_the_callers_sites(api_a, patient_a, patient_b):
    response = api_a.get("/api/v1/patients/")

    assert response.status_code == 200
    assert [p["id"] for p in response.json()["results"]] == [patient_a.pk]


def test_key_for_two_sites_sees_both(site_a, site_b, patient_a, patient_b):
    client = key_client(api_key(sites=[site_a, site_b])[1])

    ids = {p["id"] for p in client.get("/api/v1/patients/").json()["results"]}

    assert ids == {patient_a.pk, patient_b.pk}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/patients/", {"given_name": "A", "family_name": "B"}),
        ("patch", "/api/v1/patients/{id}/", {"given_name": "Changed"}),
        ("post", "/api/v1/patients/{id}/consents/grant/", {"channel": "sms", "purpose": "care"}),
        ("post", "/api/v1/patients/{id}/contact-points/", {"kind": "email", "value": "a@example.org"}),
        ("patch", "/api/v1/patients/{id}/preferences/", {"language": "pl"}),
    ],
)
def test_read_only_key_gets_403_on_writes(read_only_api_a, patient_a, method, path, body):
    response = getattr(read_only_api_a, method)(path.format(id=patient_a.pk), body, format="json")

    assert response.status_code == 403
    assert response.json()["errors"]["detail"]
    patient_a.refresh_from_db()
    assert patient_a.given_name == "Giulia"
    assert Patient.objects.count() == 1
    assert not ConsentEvent.objects.exists()


def test_read_only_key_may_read(read_only_api_a, patient_a):
    assert read_only_api_a.get(f"/api/v1/patients/{patient_a.pk}/").status_code == 200


def test_clinician_staff_cannot_write_but_can_read(site_a, patient_a):
    client = APIClient()
    client.force_login(staff_user(sites=[site_a], role=StaffRole.CLINICIAN, email="doc@example.org", password=None))

    assert client.get(f"/api/v1/patients/{patient_a.pk}/").status_code == 200
    assert client.patch(f"/api/v1/patients/{patient_a.pk}/", {"given_name": "X"}, format="json").status_code == 403


def test_revoked_key_is_401(site_a, patient_a):
    key, plaintext = api_key(sites=[site_a], can_write=True)
    client = key_client(plaintext)
    assert client.get("/api/v1/patients/").status_code == 200

    api_key_revoke(key=key)
    response = client.get(f"/api/v1/patients/{patient_a.pk}/")

    assert response.status_code == 401
    assert response.json()["status"] == 401


def test_wrong_secret_is_401(write_key_a, patient_a):
    prefix = write_key_a[1].split(".")[0]

    response = key_client(f"{prefix}.not-the-secret").get("/api/v1/patients/")

    assert response.status_code == 401


def test_x_api_key_header_is_accepted(write_key_a, patient_a):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=write_key_a[1])

    assert client.get(f"/api/v1/patients/{patient_a.pk}/").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/patients/", "/api/v1/patients/{id}/", "/api/v1/patients/{id}/consents/"])
def test_no_credentials_is_401(patient_a, path):
    response = APIClient().get(path.format(id=patient_a.pk))

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"


def test_no_credentials_cannot_create(site_a):
    response = APIClient().post("/api/v1/patients/", {"given_name": "A", "family_name": "B"}, format="json")

    assert response.status_code == 401
    assert not Patient.objects.exists()


def test_portal_patient_user_via_session_is_403(patient_a):

    contact_point_add(patient=patient_a, kind="email", value="giulia@example.org")
    portal_user = portal_account_ensure(email="giulia@example.org")
    assert list(portal_patients_for(portal_user)) == [patient_a]
    client = APIClient()
    client.force_login(portal_user)

    assert client.get("/api/v1/patients/").status_code == 403
    assert client.get(f"/api/v1/patients/{patient_a.pk}/").status_code == 403
    assert not AccessLog.objects.exists()


def test_staff_of_another_organisation_sees_nothing(patient_a):
    from tests.factories import OrganizationFactory, SiteFactory

    other_org = OrganizationFactory(slug="other", name="Other")
    client = APIClient()
    client.force_login(staff_user(sites=[SiteFactory(organization=other_org)], email="x@other.org", password=None))

    assert client.get(f"/api/v1/patients/{patient_a.pk}/").status_code == 404
    assert client.get("/api/v1/patients/").json()["count"] == 0


@pytest.mark.parametrize("pk", ["abc", "99999999999999999999999", "0"])
def test_odd_patient_ids_are_404_not_500(api_a, pk):
    assert api_a.get(f"/api/v1/patients/{pk}/").status_code == 404
    assert api_a.get(f"/api/v1/patients/{pk}/consents/").status_code == 404


def test_merged_away_patient_is_still_readable_by_id(api_a, site_a):
    survivor = PatientFactory(home_site=site_a)
    loser = PatientFactory(home_site=site_a, merged_into=survivor)

    response = api_a.get(f"/api/v1/patients/{loser.pk}/")

    assert response.status_code == 200
    assert response.json()["merged_into"] == survivor.pk


def test_api_keys_are_rate_limited_per_key(api_a, site_a, patient_a, monkeypatch):
    from clinics.api import ApiKeyRateThrottle

    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "2/min"})
    other = key_client(api_key(sites=[site_a], name="Other")[1])

    codes = [api_a.get("/api/v1/patients/").status_code for _ in range(3)]

    assert codes == [200, 200, 429]
    assert other.get("/api/v1/patients/").status_code == 200
