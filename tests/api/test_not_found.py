"""A 404 anywhere under /api/v1/ is the API's JSON error body; elsewhere it stays an HTML page."""

import pytest
from rest_framework.test import APIClient

NOT_FOUND = {"errors": {"detail": ["Not found."]}, "status": 404}


@pytest.mark.parametrize("path", ["/api/v1/nonexistent/", "/api/v1/contact-points/123/",
                                  "/api/v1/patients/abc/", "/api/v1/patients/1/nothing/", "/api/v1/schema/extra/"])
def test_an_unrouted_api_path_is_a_json_404(api_a, path):
    response = api_a.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == NOT_FOUND


def test_an_unrouted_path_has_the_shape_of_a_missing_record(api_a, patient_b):
    missing_record = api_a.get(f"/api/v1/patients/{patient_b.pk}/")  # another site's patient
    missing_route = api_a.get("/api/v1/nonexistent/")

    assert missing_record.status_code == missing_route.status_code == 404
    assert missing_record["Content-Type"] == missing_route["Content-Type"] == "application/json"
    for body in (missing_record.json(), missing_route.json()):
        assert (sorted(body), list(body["errors"]), body["status"]) == (["errors", "status"], ["detail"], 404)


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_any_method_on_an_unrouted_path_is_a_json_404_even_without_credentials(method):
    client = APIClient(enforce_csrf_checks=True)

    response = getattr(client, method)("/api/v1/nonexistent/", {"a": 1}, format="json")

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


def test_an_unrouted_path_without_its_slash_is_redirected_to_the_json_404(api_a):
    response = api_a.get("/api/v1/nonexistent", follow=True)

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


def test_a_known_route_without_its_slash_is_still_redirected(api_a):
    response = api_a.get("/api/v1/patients")

    assert response.status_code == 301
    assert response["Location"] == "/api/v1/patients/"


@pytest.mark.parametrize("path", ["/api/v1/", "/api/v1/docs/", "/api/v1/redoc/"])
def test_the_api_root_and_docs_are_still_served(api_a, path):
    assert api_a.get(path).status_code == 200


def test_the_schema_is_still_served(api_a):
    response = api_a.get("/api/v1/schema/", {"format": "json"})

    assert response.status_code == 200
    assert "/api/v1/patients/" in response.json()["paths"]


@pytest.mark.parametrize("path", ["/nonexistent/", "/console/nonexistent/", "/api/v2/patients/"])
def test_a_404_outside_the_api_stays_html(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
