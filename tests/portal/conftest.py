import re

import pytest
from django.core import mail
from django.core.cache import cache

from patients.services import contact_point_add, portal_account_ensure
from tests.factories import PatientFactory

CODE_RE = re.compile(r"^ {4}(\S+)$", re.MULTILINE)


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """allauth keeps rate-limit counters in the (locmem) cache, which outlives a test."""
    cache.clear()
    yield
    cache.clear()


def code_from_outbox(to: str) -> str:
    """The sign-in code of the latest mail sent to `to`."""
    sent = [m for m in mail.outbox if to in m.to]
    assert sent, f"no mail to {to}"
    match = CODE_RE.search(sent[-1].body)
    assert match, sent[-1].body
    return match.group(1)


@pytest.fixture
def make_patient(site_a):
    def make(*, email=None, phone=None, linked=True, **fields):
        patient = PatientFactory(home_site=site_a, **fields)
        if email:
            contact_point_add(patient=patient, kind="email", value=email)
        if phone:
            contact_point_add(patient=patient, kind="phone", value=phone)
        # the account a sign-in with that email would use (an attribute of the test's object only)
        patient.portal_account = portal_account_ensure(email=email) if email and linked else None
        return patient

    return make


@pytest.fixture
def patient_a(make_patient):
    return make_patient(email="anna@example.org", phone="+393331234567", given_name="Anna", family_name="Rossi")


@pytest.fixture
def patient_b(make_patient):
    return make_patient(email="bruno@example.org", phone="+393339876543", given_name="Bruno", family_name="Bianchi")


@pytest.fixture
def client_a(client, patient_a):
    client.force_login(patient_a.portal_account)
    return client
