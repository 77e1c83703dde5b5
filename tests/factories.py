"""factory_boy factories shared by the whole suite."""

import datetime as dt

import factory
from django.utils import timezone

from clinics.models import Organization, Site, StaffRole
from clinics.services import api_key_create, staff_create
from consent.models import ConsentAction, ConsentEvent, ConsentSource
from patients.models import Patient
from patients.normalize import fold


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization
        django_get_or_create = ["slug"]

    name = "Clinica Demo"
    slug = "demo"


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Site {n}")
    slug = factory.Sequence(lambda n: f"site-{n}")
    time_zone = "Europe/Rome"
    language = "it"
    phone_region = "IT"


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    home_site = factory.SubFactory(SiteFactory)
    organization = factory.SelfAttribute("home_site.organization")
    given_name = factory.Faker("first_name")
    family_name = factory.Faker("last_name")
    date_of_birth = factory.LazyFunction(lambda: dt.date(1980, 5, 17))
    language = "en"
    search_name = factory.LazyAttribute(lambda o: fold(f"{o.given_name} {o.family_name}"))


def staff_user(*, sites=(), role=StaffRole.FRONT_DESK, email=None, password="correct-horse-battery", organization=None):
    """A staff user granted `sites` (guardian), returned with its password set."""
    organization = organization or (sites[0].organization if sites else OrganizationFactory())
    email = email or f"staff{Organization.objects.count()}-{timezone.now().timestamp()}@example.org"
    member = staff_create(organization=organization, email=email, password=password, role=role, sites=sites,
                          display_name=email.split("@")[0])
    return member.user


def api_key(*, sites, can_write=False, name="EHR bridge"):
    """(ApiKey, plaintext) for `sites`."""
    return api_key_create(organization=sites[0].organization, name=name, sites=sites, can_write=can_write)


def consent_event(patient, channel, purpose, action=ConsentAction.GRANT, at=None, source=ConsentSource.STAFF):
    return ConsentEvent.objects.create(
        patient=patient, channel=channel, purpose=purpose, action=action, source=source, at=at or timezone.now()
    )
