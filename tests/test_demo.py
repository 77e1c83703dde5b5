"""`manage.py load_demo`: the demo clinic loads once, the printed logins work."""

import io
import re

import pytest
from django.core.management import call_command
from django.db import transaction

from clinics.models import Organization, Site, StaffMember, User
from clinics.selectors import site_ids_for
from consent.models import ConsentEvent
from patients.models import ContactPoint, Patient, PatientChange, PatientIdentifier
from patients.selectors import patient_duplicates, portal_accounts_of

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _load() -> str:
    out = io.StringIO()
    call_command("load_demo", stdout=out)
    return out.getvalue()


def _counts() -> dict[str, int]:
    models = [Organization, Site, User, StaffMember, Patient, ContactPoint, PatientIdentifier, PatientChange,
              ConsentEvent]
    return {m.__name__: m.objects.count() for m in models}


def test_load_demo_twice_leaves_the_same_data():
    # given the demo loaded once
    _load()
    first = _counts()

    # when it is loaded again
    output = _load()

    # then nothing was added
    assert _counts() == first
    assert "already loaded" in output
    assert first["Organization"] == 1 and first["Site"] == 2
    assert 190 <= first["Patient"] <= 210


def test_printed_staff_logins_sign_in(client):
    # given the demo loaded and its printed logins
    output = _load()
    logins = re.findall(r"Staff login: (\S+) / (\S+)", output)
    assert [email for email, _ in logins] == [
        "admin@touchpoint.local", "frontdesk.roma@touchpoint.local", "clinician.warszawa@touchpoint.local",
    ]
    assert "http://127.0.0.1:8000/" in output

    # then each of them signs in
    for email, password in logins:
        assert client.login(email=email, password=password), email
        client.logout()


def test_demo_clinic_has_scoped_staff_duplicates_a_shared_phone_and_consent_history():
    # given the demo loaded
    _load()
    roma, warszawa = Site.objects.get(slug="roma-prati"), Site.objects.get(slug="warszawa-mokotow")

    # then each staff member sees their own sites, and the admin is a superuser
    admin = User.objects.get(email="admin@touchpoint.local")
    assert admin.is_superuser
    assert site_ids_for(admin) == {roma.pk, warszawa.pk}
    assert site_ids_for(User.objects.get(email="frontdesk.roma@touchpoint.local")) == {roma.pk}
    assert site_ids_for(User.objects.get(email="clinician.warszawa@touchpoint.local")) == {warszawa.pk}
    assert (roma.time_zone, roma.language, roma.phone_region) == ("Europe/Rome", "it", "IT")
    assert (warszawa.time_zone, warszawa.language, warszawa.phone_region) == ("Europe/Warsaw", "pl", "PL")

    # and the merge screen has a duplicate to offer
    esposito = Patient.objects.get(given_name="Giuseppe", family_name="Esposito", date_of_birth__year=1957)
    assert [(p.family_name, why) for p, why in patient_duplicates(esposito)] == [
        ("Espositto", "same_phone_and_birth_date")
    ]
    # and a parent and child share a phone; one number bounced
    shared = ContactPoint.objects.filter(value="+48601555013").values_list("patient__given_name", flat=True)
    assert sorted(shared) == ["Tomasz", "Zuzanna"]
    assert ContactPoint.objects.filter(is_valid=False).count() == 1

    # and consent came from imports, the portal and the desk, with some withdrawals
    assert {"import", "portal", "staff"} <= set(ConsentEvent.objects.values_list("source", flat=True))
    assert ConsentEvent.objects.filter(action="revoke").exists()
    assert set(Patient.objects.values_list("language", flat=True)) == {"en", "it", "pl"}
    assert sum(portal_accounts_of(p).exists() for p in Patient.objects.all()) >= 3


def test_demo_is_the_same_every_time():
    # given the demo loaded once, its patients noted, and that load rolled back
    with transaction.atomic():
        _load()
        first = sorted(Patient.objects.values_list("given_name", "family_name", "date_of_birth", "home_site__slug"))
        numbers = sorted(ContactPoint.objects.values_list("value", flat=True))
        transaction.set_rollback(True)
    assert not Patient.objects.exists()

    # when it is loaded again
    _load()

    # then it is the same clinic
    assert sorted(Patient.objects.values_list("given_name", "family_name", "date_of_birth", "home_site__slug")) == first
    assert sorted(ContactPoint.objects.values_list("value", flat=True)) == numbers
