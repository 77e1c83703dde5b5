"""The OpenAPI schema and docs, and `manage.py create_api_key`."""

import io

import pytest
from django.core.management import CommandError, call_command
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from clinics.models import ApiKey
from tests.api.conftest import key_client

OUR_MODULES = ("patients/api.py", "consent/api.py", "clinics/api.py")


@pytest.mark.django_db
def test_schema_is_valid_openapi_json_with_the_patient_paths():
    response = APIClient().get("/api/v1/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    for path in ["/api/v1/patients/", "/api/v1/patients/{id}/", "/api/v1/patients/{id}/export/",
                 "/api/v1/patients/{id}/timeline/", "/api/v1/patients/{id}/merge/",
                 "/api/v1/patients/{id}/preferences/", "/api/v1/patients/{patient_pk}/consents/grant/",
                 "/api/v1/patients/{patient_pk}/contact-points/{id}/invalidate/",
                 "/api/v1/patients/{patient_pk}/access-log/"]:
        assert path in schema["paths"], path
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["in"] == "header"
    create = schema["paths"]["/api/v1/patients/"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in create["parameters"])
    assert "contact_points" in schema["components"]["schemas"]["PatientCreateRequest"]["properties"]


def test_our_views_generate_the_schema_without_warnings():
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        SchemaGenerator().get_schema(request=None, public=True)

    ours = [m for m in [*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache] if any(x in m for x in OUR_MODULES)]
    enum_clashes = [m for m in GENERATOR_STATS._warn_cache if "ChannelEnum" in m or "PreferredChannels" in m]
    GENERATOR_STATS.reset()
    assert ours == []
    assert enum_clashes == []


@pytest.mark.django_db
def test_swagger_docs_render_from_the_sidecar_without_a_cdn():
    response = APIClient().get("/api/v1/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "/static/drf_spectacular_sidecar/" in html
    assert "cdn.jsdelivr" not in html and "unpkg.com" not in html


# --- create_api_key ---------------------------------------------------------------------------


def _run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_api_key_prints_a_working_read_only_key_once(org, site_a, site_b, patient_a):
    out, err = _run("--org", org.slug, "--name", "EHR", "--site", site_a.slug, "--site", site_b.slug)

    plaintext = out.strip()
    key = ApiKey.objects.get()
    assert plaintext.startswith(key.prefix + ".")
    assert plaintext not in err and key.hashed_secret != plaintext.split(".", 1)[1]
    assert set(key.sites.all()) == {site_a, site_b}
    assert key.can_write is False
    assert "read-only" in err
    client = key_client(plaintext)
    assert client.get(f"/api/v1/patients/{patient_a.pk}/").status_code == 200
    assert client.patch(f"/api/v1/patients/{patient_a.pk}/", {"pronouns": "x"}, format="json").status_code == 403


def test_create_api_key_with_write(org, site_a):
    _run("--org", org.slug, "--name", "EHR", "--site", site_a.slug, "--write")

    assert ApiKey.objects.get().can_write is True


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--org", "nope", "--name", "EHR", "--site", "roma"], "Unknown organisation 'nope'"),
     (["--org", "demo", "--name", "EHR", "--site", "roma", "--site", "atlantis"], "Unknown site(s) atlantis"),
     (["--org", "demo", "--name", "  ", "--site", "roma"], "--name")],
)
def test_create_api_key_reports_bad_arguments_clearly(site_a, args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _run(*args)

    assert not ApiKey.objects.exists()


def test_create_api_key_needs_a_site(org):
    with pytest.raises(CommandError, match="--site"):
        _run("--org", org.slug, "--name", "EHR")
