"""Patient 360 writes: create, update with history, contact points, portal accounts, duplicates."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from clinics.models import StaffRole, User
from config.errors import DomainError
from patients.models import ChangeSource, ContactKind, ContactPoint, Patient, PatientChange, PatientIdentifier
from patients.normalize import PhoneType
from patients.selectors import patient_duplicates, portal_accounts_of, portal_patients_for
from patients.services import (
    contact_point_add,
    contact_point_invalidate,
    contact_point_revalidate,
    contact_point_set_primary,
    identifier_add,
    patient_create,
    patient_update,
    portal_account_ensure,
)
from tests.factories import OrganizationFactory, SiteFactory, staff_user

AT = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


def counts() -> tuple[int, int, int, int]:
    return (Patient.objects.count(), ContactPoint.objects.count(), PatientIdentifier.objects.count(),
            PatientChange.objects.count())


@pytest.fixture
def patient(site_a, time_machine):
    time_machine.move_to(AT - dt.timedelta(days=1), tick=False)
    return patient_create(home_site=site_a, given_name="Mario", family_name="Rossi", date_of_birth=dt.date(1975, 3, 9))


# --- patient_create --------------------------------------------------------------------------

def test_patient_create_stores_the_profile_contacts_mrn_and_a_first_change(site_b, time_machine):
    time_machine.move_to(AT, tick=False)
    desk = staff_user(sites=[site_b], email="recepcja@example.pl")

    patient = patient_create(
        home_site=site_b, given_name="  Łucja ", family_name="Wójcik", actor=desk, mrn=" W-77 ",
        contact_points=[{"kind": "phone", "value": "601 234 567"}, {"kind": "email", "value": "Lucja@Example.PL"}],
    )

    patient.refresh_from_db()
    assert (patient.given_name, patient.family_name, patient.search_name) == ("Łucja", "Wójcik", "lucja wojcik")
    assert patient.organization == site_b.organization
    assert patient.language == "pl"  # the site's language by default
    assert patient.tz.key == "Europe/Warsaw"
    assert sorted(patient.contact_points.values_list("kind", "value", "is_primary")) == [
        ("email", "lucja@example.pl", True), ("phone", "+48601234567", True),
    ]
    assert list(patient.identifiers.values_list("system", "value")) == [("mrn", "W-77")]
    change = patient.changes.get()
    assert (change.summary, change.actor, change.actor_label, change.at) == ("Patient created", desk, "recepcja", AT)


@pytest.mark.parametrize(("field", "kwargs"), [
    ("language", {"language": "klingon"}),
    ("time_zone", {"time_zone": "Mars/Olympus_Mons"}),
    ("given_name", {"given_name": "x" * 101}),
    ("family_name", {"family_name": "y" * 101}),
    ("preferred_name", {"preferred_name": "z" * 101}),
    ("given_name", {"given_name": "   "}),
    ("sex", {"sex": "other"}),
    ("preferred_channels", {"preferred_channels": ["sms", "sms"]}),
    ("preferred_channels", {"preferred_channels": ["pigeon"]}),
    ("notes", {"notes": "n" * 5001}),
    ("favourite_colour", {"favourite_colour": "blue"}),
    ("value", {"contact_points": [{"kind": "phone", "value": "12345"}]}),
    ("value", {"contact_points": [{"kind": "email", "value": "not-an-email"}]}),
    ("value", {"contact_points": [{"kind": "whatsapp", "value": "06 1234 5678"}]}),
    ("kind", {"contact_points": [{"kind": "fax", "value": "06 1234 5678"}]}),
    ("mrn", {"mrn": "   "}),
])
def test_patient_create_names_the_bad_field_and_stores_nothing(field, kwargs, site_a):
    before = counts()
    data = {"given_name": "Mario", "family_name": "Rossi",
            "contact_points": [{"kind": "email", "value": "mario@example.org"}]} | kwargs

    with pytest.raises(ValidationError) as exc:
        patient_create(home_site=site_a, **data)

    assert field in exc.value.message_dict
    assert counts() == before


# --- contact points --------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "raw", "stored", "phone_kind"), [
    ("phone", "347 123 4567", "+393471234567", PhoneType.MOBILE),
    ("phone", "0039 06 1234 5678", "+390612345678", PhoneType.LANDLINE),
    ("whatsapp", "(347) 123-4567", "+393471234567", PhoneType.MOBILE),
    ("phone", "+48 601 234 567", "+48601234567", PhoneType.MOBILE),
    ("email", "  Mario.Rossi@Example.ORG ", "mario.rossi@example.org", ""),
])
def test_contact_point_add_normalises_the_value(kind, raw, stored, phone_kind, patient):
    cp = contact_point_add(patient=patient, kind=kind, value=raw)

    cp.refresh_from_db()
    assert (cp.value, cp.phone_type) == (stored, phone_kind)


def test_a_landline_cannot_be_a_whatsapp_number(patient):
    with pytest.raises(ValidationError) as exc:
        contact_point_add(patient=patient, kind=ContactKind.WHATSAPP, value="06 1234 5678")

    assert list(exc.value.message_dict) == ["value"]
    assert not ContactPoint.objects.exists()


def test_the_first_contact_point_of_a_kind_becomes_primary(patient):
    first = contact_point_add(patient=patient, kind="phone", value="347 123 4567")
    second = contact_point_add(patient=patient, kind="phone", value="333 765 4321")
    email = contact_point_add(patient=patient, kind="email", value="mario@example.org")

    assert ContactPoint.objects.get(pk=first.pk).is_primary
    assert not ContactPoint.objects.get(pk=second.pk).is_primary
    assert ContactPoint.objects.get(pk=email.pk).is_primary


def test_adding_a_primary_contact_point_demotes_the_old_one(patient):
    first = contact_point_add(patient=patient, kind="phone", value="347 123 4567")
    second = contact_point_add(patient=patient, kind="phone", value="333 765 4321", is_primary=True)

    assert list(ContactPoint.objects.filter(patient=patient, is_primary=True)) == [second]
    contact_point_set_primary(contact_point=first, actor=None, source=ChangeSource.STAFF)
    assert list(ContactPoint.objects.filter(patient=patient, is_primary=True)) == [first]


def test_the_same_contact_point_twice_is_a_409_conflict(patient):
    contact_point_add(patient=patient, kind="phone", value="+39 347 123 4567")
    before = counts()

    with pytest.raises(DomainError) as exc:
        contact_point_add(patient=patient, kind="phone", value="3471234567")

    assert (exc.value.status, exc.value.field) == (409, "value")
    assert exc.value.as_dict() == {"value": ["This patient already has this contact point."]}
    assert counts() == before


def test_the_same_number_as_phone_and_whatsapp_is_allowed(patient):
    contact_point_add(patient=patient, kind="phone", value="347 123 4567")
    contact_point_add(patient=patient, kind="whatsapp", value="347 123 4567")

    assert patient.contact_points.count() == 2


def test_two_patients_may_share_a_phone(patient, site_a):
    child = patient_create(home_site=site_a, given_name="Luca", family_name="Rossi")

    contact_point_add(patient=patient, kind="phone", value="347 123 4567")
    contact_point_add(patient=child, kind="phone", value="+39 347 123 4567")

    assert ContactPoint.objects.filter(value="+393471234567").count() == 2


def test_adding_a_contact_point_is_recorded(patient, site_a):
    desk = staff_user(sites=[site_a], email="desk@example.org")

    contact_point_add(patient=patient, kind="email", value="Mario@Example.org", actor=desk)

    change = patient.changes.first()
    assert (change.summary, change.changes, change.actor) == (
        "Contact point added", {"email": [None, "mario@example.org"]}, desk
    )


def test_invalidating_a_contact_point_keeps_the_row(patient, time_machine):
    time_machine.move_to(AT, tick=False)
    cp = contact_point_add(patient=patient, kind="phone", value="347 123 4567")
    changes = PatientChange.objects.count()

    contact_point_invalidate(contact_point=cp, reason="Twilio 21211: invalid number")
    contact_point_invalidate(contact_point=cp, reason="again")  # already invalid: nothing new

    row = ContactPoint.objects.get(pk=cp.pk)
    assert (row.is_valid, row.invalid_reason, row.invalidated_at) == (False, "Twilio 21211: invalid number", AT)
    assert PatientChange.objects.count() == changes + 1
    assert patient.changes.first().summary == "Contact point marked invalid"

    contact_point_revalidate(contact_point=cp, actor=None, source=ChangeSource.STAFF)
    row.refresh_from_db()
    assert (row.is_valid, row.invalid_reason, row.invalidated_at) == (True, "", None)


def test_identifier_add_is_idempotent(patient):
    first = identifier_add(patient=patient, system="mrn", value="A-1")
    again = identifier_add(patient=patient, system=" ", value=" A-1 ")

    assert first == again
    assert patient.identifiers.count() == 1


# --- patient_update --------------------------------------------------------------------------

def test_patient_update_records_old_and_new_values(patient, site_a, time_machine):
    time_machine.move_to(AT, tick=False)
    desk = staff_user(sites=[site_a], email="desk@example.org")

    patient_update(patient=patient, actor=desk, source=ChangeSource.STAFF, family_name="Rossi-Verdi",
                   date_of_birth=dt.date(1975, 3, 19), given_name="Mario")

    patient.refresh_from_db()
    assert (patient.family_name, patient.search_name) == ("Rossi-Verdi", "mario rossi-verdi")
    change = patient.changes.first()
    assert change.summary == "Profile changed"
    assert change.changes == {"family_name": ["Rossi", "Rossi-Verdi"], "date_of_birth": ["1975-03-09", "1975-03-19"]}
    assert (change.actor, change.actor_label, change.source, change.at) == (desk, "desk", "staff", AT)


def test_a_preferences_only_update_is_labelled_as_such(patient):
    patient_update(patient=patient, actor=None, source=ChangeSource.PORTAL, preferred_channels=["email", "sms"],
                   quiet_hours_start=dt.time(22, 0))

    change = patient.changes.first()
    assert change.summary == "Contact preferences changed"
    assert change.changes == {"preferred_channels": [["whatsapp", "sms", "email"], ["email", "sms"]],
                              "quiet_hours_start": ["21:00:00", "22:00:00"]}


def test_an_update_that_changes_nothing_records_nothing(patient):
    before = counts()

    patient_update(patient=patient, actor=None, source=ChangeSource.STAFF, family_name="Rossi")

    assert counts() == before


@pytest.mark.parametrize(("field", "kwargs"), [
    ("language", {"language": "xx"}),
    ("time_zone", {"time_zone": "Nowhere/City"}),
    ("family_name", {"family_name": "f" * 101}),
    ("organization", {"organization": None}),
    ("merged_into", {"merged_into": None}),
])
def test_patient_update_names_the_bad_field_and_changes_nothing(field, kwargs, patient):
    before = counts()

    with pytest.raises(ValidationError) as exc:
        patient_update(patient=patient, actor=None, source=ChangeSource.STAFF, **kwargs)

    assert field in exc.value.message_dict
    assert counts() == before
    fresh = Patient.objects.get(pk=patient.pk)
    assert (fresh.language, fresh.time_zone, fresh.family_name) == ("it", "", "Rossi")


def test_moving_a_patient_to_another_organisations_site_is_refused(patient):
    elsewhere = SiteFactory(organization=OrganizationFactory(name="Altra", slug="altra"))

    with pytest.raises(ValidationError) as exc:
        patient_update(patient=patient, actor=None, source=ChangeSource.STAFF, home_site=elsewhere)

    assert "home_site" in exc.value.message_dict
    assert Patient.objects.get(pk=patient.pk).home_site_id == patient.organization.sites.get().pk


def test_a_merged_patient_cannot_be_updated(patient, site_a):
    survivor = patient_create(home_site=site_a, given_name="Mario", family_name="Rossi")
    Patient.objects.filter(pk=patient.pk).update(merged_into=survivor)
    patient.refresh_from_db()

    with pytest.raises(DomainError) as exc:
        patient_update(patient=patient, actor=None, source=ChangeSource.STAFF, family_name="Bianchi")

    assert exc.value.status == 409


# --- portal_account_ensure ---------------------------------------------------------------------

def test_a_portal_account_is_created_once_per_address_a_patient_holds(patient):
    contact_point_add(patient=patient, kind="email", value="Mario@Example.org")
    contact_point_add(patient=patient, kind="email", value="other@example.org")

    first = portal_account_ensure(email=" MARIO@example.org ")
    again = portal_account_ensure(email="mario@example.org")
    second_address = portal_account_ensure(email="other@example.org")

    assert first == again and first.email == "mario@example.org"
    assert not first.has_usable_password()
    assert User.objects.filter(email="mario@example.org").count() == 1
    assert set(portal_accounts_of(patient)) == {first, second_address}
    assert list(portal_patients_for(first)) == list(portal_patients_for(second_address)) == [patient]


def test_a_family_email_shares_one_portal_account(patient, site_a):
    child = patient_create(home_site=site_a, given_name="Luca", family_name="Rossi",
                           contact_points=[{"kind": "email", "value": "famiglia.rossi@example.org"}])
    contact_point_add(patient=patient, kind="email", value="FAMIGLIA.ROSSI@example.org")

    account = portal_account_ensure(email="famiglia.rossi@example.org")

    assert set(portal_patients_for(account)) == {patient, child}


def test_an_address_no_valid_record_holds_gets_no_portal_account(patient):
    assert portal_account_ensure(email="mario@example.org") is None
    cp = contact_point_add(patient=patient, kind="email", value="mario@example.org")
    contact_point_invalidate(contact_point=cp, reason="bounced")

    assert portal_account_ensure(email="mario@example.org") is None
    assert portal_account_ensure(email="not an email") is None
    assert not User.objects.filter(email="mario@example.org").exists()


@pytest.mark.parametrize("kind", ["staff", "superuser", "django_staff"])
def test_a_staff_account_is_never_a_portal_account(kind, patient, site_a):
    if kind == "staff":
        staff = staff_user(sites=[site_a], role=StaffRole.CLINICIAN, email="mario@example.org")
    elif kind == "superuser":
        staff = User.objects.create_superuser(email="mario@example.org", password="correct-horse-battery")
    else:
        staff = User.objects.create_user(email="mario@example.org", is_staff=True)
    contact_point_add(patient=patient, kind="email", value="Mario@example.org")

    assert portal_account_ensure(email="mario@example.org") is None
    assert not portal_patients_for(staff).exists()
    assert not portal_accounts_of(patient).exists()


# --- duplicates ------------------------------------------------------------------------------

def reasons(patient) -> dict[str, str]:
    return {p.given_name + " " + p.family_name: why for p, why in patient_duplicates(patient)}


def test_same_phone_and_birth_date_is_a_likely_duplicate(patient, site_b):
    contact_point_add(patient=patient, kind="phone", value="347 123 4567")
    patient_create(home_site=site_b, given_name="Marco", family_name="Bianchi", date_of_birth=dt.date(1975, 3, 9),
                   contact_points=[{"kind": "whatsapp", "value": "+39 347 123 4567"}])
    # a child on the same phone with another birth date is not
    patient_create(home_site=site_b, given_name="Luca", family_name="Bianchi", date_of_birth=dt.date(2015, 6, 1),
                   contact_points=[{"kind": "phone", "value": "+39 347 123 4567"}])

    assert reasons(patient) == {"Marco Bianchi": "same_phone_and_birth_date"}


def test_same_email_is_a_likely_duplicate(patient, site_a):
    contact_point_add(patient=patient, kind="email", value="m.rossi@example.org")
    patient_create(home_site=site_a, given_name="Gino", family_name="Verdi",
                   contact_points=[{"kind": "email", "value": "M.Rossi@example.org"}])

    assert reasons(patient) == {"Gino Verdi": "same_email"}


@pytest.mark.parametrize(("given", "family", "dob", "is_duplicate"), [
    ("Mario", "Rossi", dt.date(1975, 3, 9), True),
    ("MARIO", "ROSSI", dt.date(1975, 3, 9), True),
    ("Mario Luigi", "Rossi", dt.date(1975, 3, 9), True),
    ("Maria", "Rossi", dt.date(1975, 3, 9), True),  # a typo
    ("Mario", "Rossi", dt.date(1975, 3, 10), False),
    ("Giulia", "Verdi", dt.date(1975, 3, 9), False),
])
def test_similar_names_with_the_same_birth_date(given, family, dob, is_duplicate, patient, site_a):
    patient_create(home_site=site_a, given_name=given, family_name=family, date_of_birth=dob)

    found = reasons(patient)

    assert found == ({f"{given} {family}": "similar_name_and_birth_date"} if is_duplicate else {})


def test_duplicates_ignore_merged_records_and_other_organisations(patient, site_a):
    twin = patient_create(home_site=site_a, given_name="Mario", family_name="Rossi", date_of_birth=dt.date(1975, 3, 9))
    Patient.objects.filter(pk=twin.pk).update(merged_into=patient)
    elsewhere = SiteFactory(organization=OrganizationFactory(name="Altra", slug="altra"))
    patient_create(home_site=elsewhere, given_name="Mario", family_name="Rossi", date_of_birth=dt.date(1975, 3, 9))

    assert reasons(patient) == {}
