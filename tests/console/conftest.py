"""Fixtures for the staff console: staff of each role on site A, patients on sites A and B."""

import datetime as dt

import pytest
from django.core.cache import cache

from clinics.models import StaffRole
from patients.services import patient_create
from tests.factories import staff_user

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    """allauth keeps login rate-limit counters in the cache; tests must not share them."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def front_desk(site_a):
    return staff_user(sites=[site_a], role=StaffRole.FRONT_DESK, email="desk@example.org", password=PASSWORD)


@pytest.fixture
def clinician(site_a):
    return staff_user(sites=[site_a], role=StaffRole.CLINICIAN, email="doc@example.org", password=PASSWORD)


@pytest.fixture
def desk_client(client, front_desk):
    client.force_login(front_desk)
    return client


@pytest.fixture
def clinician_client(client, clinician):
    client.force_login(clinician)
    return client


@pytest.fixture
def mario(site_a):
    """Mario Rossi at Roma: Italian mobile, email, MRN."""
    return patient_create(
        home_site=site_a, given_name="Mario", family_name="Rossi", date_of_birth=dt.date(1980, 5, 17),
        contact_points=[{"kind": "phone", "value": "+39 347 123 4567"}, {"kind": "email", "value": "Mario.Rossi@Example.org"}],
        mrn="MRN-0042",
    )


@pytest.fixture
def giulia(site_a):
    return patient_create(
        home_site=site_a, given_name="Giulia", family_name="Bianchi", date_of_birth=dt.date(1992, 11, 3),
        contact_points=[{"kind": "phone", "value": "06 1234 5678"}], mrn="MRN-0077",
    )


@pytest.fixture
def anna(site_b):
    """Anna Nowak at Warszawa (site B), out of scope for site A staff."""
    return patient_create(
        home_site=site_b, given_name="Anna", family_name="Nowak", date_of_birth=dt.date(1975, 1, 30),
        contact_points=[{"kind": "phone", "value": "+48 601 234 567"}], mrn="MRN-9001",
    )
