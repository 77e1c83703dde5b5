import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.factories import PatientFactory, api_key, staff_user


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Idempotency records and throttles live in the cache; ids repeat between tests.
    cache.clear()
    yield
    cache.clear()


def key_client(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {plaintext}")
    return client


@pytest.fixture
def write_key_a(site_a):
    return api_key(sites=[site_a], can_write=True, name="EHR bridge A")


@pytest.fixture
def api_a(write_key_a):
    """A client holding a read-write key of site A."""
    return key_client(write_key_a[1])


@pytest.fixture
def read_only_api_a(site_a):
    return key_client(api_key(sites=[site_a], can_write=False, name="Reporting")[1])


@pytest.fixture
def staff_a(site_a):
    return staff_user(sites=[site_a], email="desk-a@example.org", password=None)


@pytest.fixture
def staff_client_a(staff_a):
    client = APIClient()
    client.force_login(staff_a)
    return client


@pytest.fixture
def patient_a(site_a):
    return PatientFactory(home_site=site_a, given_name="Giulia", family_name="Rossi")


@pytest.fixture
def patient_b(site_b):
    return PatientFactory(home_site=site_b, given_name="Anna", family_name="Kowalska")
