"""patient_search over a scoped queryset: phone in any format, email, birth date, MRN, folded names."""

import datetime as dt

import pytest
from django.db import connection, transaction
from django.http import Http404

from clinics.models import StaffRole
from patients.models import ContactKind, ContactPoint, Patient, PatientIdentifier
from patients.normalize import fold
from patients.selectors import patient_get_for, patient_search, patients_visible_to
from patients.services import patient_create
from tests.factories import OrganizationFactory, SiteFactory, api_key, staff_user


@pytest.fixture
def people(site_a, site_b):
    mario = patient_create(
        home_site=site_a, given_name="Mario", family_name="Rossi", date_of_birth=dt.date(1975, 3, 9), mrn="MRN-0042",
        contact_points=[{"kind": "phone", "value": "347 123 4567"}, {"kind": "email", "value": "Mario.Rossi@Example.org"}],
    )
    anna = patient_create(
        home_site=site_a, given_name="Anna Maria", family_name="Bianchi", date_of_birth=dt.date(1988, 11, 2),
        mrn="778812", contact_points=[{"kind": "whatsapp", "value": "+39 333 765 4321"}],
    )
    lucja = patient_create(
        home_site=site_b, given_name="Łucja", family_name="Wójcik", date_of_birth=dt.date(1990, 12, 1),
        contact_points=[{"kind": "phone", "value": "601 234 567"}, {"kind": "email", "value": "lucja@example.pl"}],
    )
    return {"mario": mario, "anna": anna, "lucja": lucja}


@pytest.fixture
def everyone(site_a, site_b):
    return staff_user(sites=[site_a, site_b])


def found(actor, query) -> set[str]:
    return {p.given_name for p in patient_search(patients_visible_to(actor), query)}


@pytest.mark.parametrize("query", [
    "+39 347 123 4567", "3471234567", "347 123 4567", "0039 347-123-4567", "(347) 123 4567", "+393471234567",
])
def test_an_italian_phone_is_found_in_any_format(query, people, everyone):
    assert found(everyone, query) == {"Mario"}


@pytest.mark.parametrize("query", ["+48 601 234 567", "601234567", "601 234 567", "0048601234567"])
def test_a_polish_phone_is_found_for_a_warsaw_patient(query, people, everyone):
    assert found(everyone, query) == {"Łucja"}


def test_a_local_polish_number_is_read_with_the_region_of_the_sites_in_scope(people, site_b):
    # given a user who sees only Warsaw, where IT (the default region) cannot read the number
    warsaw_only = staff_user(sites=[site_b])

    assert found(warsaw_only, "601 234 567") == {"Łucja"}


def test_a_whatsapp_number_is_found_by_phone(people, everyone):
    assert found(everyone, "333 765 4321") == {"Anna Maria"}


@pytest.mark.parametrize("query", ["mario.rossi@example.org", "MARIO.ROSSI@EXAMPLE.ORG", "  Mario.Rossi@example.org "])
def test_email_is_found_whatever_the_case(query, people, everyone):
    assert found(everyone, query) == {"Mario"}


def test_a_partial_email_finds_nobody(people, everyone):
    assert found(everyone, "rossi@example") == set()


@pytest.mark.parametrize("query", ["1975-03-09", "09/03/1975", "09.03.1975", "9-3-1975"])
def test_birth_date_in_several_formats(query, people, everyone):
    assert found(everyone, query) == {"Mario"}


@pytest.mark.parametrize(("query", "who"), [("MRN-0042", "Mario"), ("778812", "Anna Maria")])
def test_mrn_is_found_exactly(query, who, people, everyone):
    assert found(everyone, query) == {who}


@pytest.mark.parametrize(("query", "who"), [
    ("lucja", {"Łucja"}), ("Łucja", {"Łucja"}), ("LUCJA", {"Łucja"}), ("wojcik", {"Łucja"}), ("Wójcik", {"Łucja"}),
    ("wójcik łucja", {"Łucja"}), ("ross", {"Mario"}), ("mario rossi", {"Mario"}), ("rossi mario", {"Mario"}),
    ("anna bianchi", {"Anna Maria"}), ("mari", {"Mario", "Anna Maria"}), ("mari ross", {"Mario"}),
])
def test_names_are_found_folded_and_by_every_token(query, who, people, everyone):
    assert found(everyone, query) == who


@pytest.mark.parametrize("query", ["mario bianchi", "lucja rossi", "smith", "100%", "ross_"])
def test_a_name_search_needs_every_token_to_match(query, people, everyone):
    assert found(everyone, query) == set()


def test_an_empty_query_returns_the_queryset_unchanged(people, everyone):
    assert found(everyone, "   ") == {"Mario", "Anna Maria", "Łucja"}


def test_search_never_reaches_outside_the_sites_in_scope(people, site_a):
    rome_only = staff_user(sites=[site_a])

    assert found(rome_only, "+48 601 234 567") == set()
    assert found(rome_only, "lucja@example.pl") == set()
    assert found(rome_only, "lucja") == set()
    assert found(rome_only, "01/12/1990") == set()
    assert found(rome_only, "mario") == {"Mario"}


def test_a_shared_phone_finds_every_patient_who_uses_it(people, site_a, everyone):
    patient_create(home_site=site_a, given_name="Luca", family_name="Rossi",
                   contact_points=[{"kind": "phone", "value": "+39 347 123 4567"}])

    assert found(everyone, "3471234567") == {"Mario", "Luca"}


def test_an_invalid_number_is_still_searchable(people, everyone):
    ContactPoint.objects.filter(patient=people["mario"], kind=ContactKind.PHONE).update(is_valid=False)

    assert found(everyone, "3471234567") == {"Mario"}


# --- scoping ---------------------------------------------------------------------------------

def test_patients_visible_to_excludes_other_sites(people, site_a, site_b):
    assert set(patients_visible_to(staff_user(sites=[site_a], role=StaffRole.CLINICIAN))) == {
        people["mario"], people["anna"]
    }
    assert set(patients_visible_to(staff_user(sites=[site_b]))) == {people["lucja"]}


def test_patients_visible_to_an_api_key_follows_its_sites(people, site_b):
    key, _plain = api_key(sites=[site_b])

    assert set(patients_visible_to(key)) == {people["lucja"]}


def test_patients_of_another_organisation_are_invisible(people, everyone):
    other = SiteFactory(organization=OrganizationFactory(name="Altra", slug="altra"))
    stranger = patient_create(home_site=other, given_name="Mario", family_name="Rossi")

    assert stranger not in patients_visible_to(everyone)
    assert found(everyone, "mario rossi") == {"Mario"}
    assert patient_search(patients_visible_to(everyone), "mario rossi").get() == people["mario"]


def test_merged_records_are_hidden_unless_asked(people, everyone):
    Patient.objects.filter(pk=people["anna"].pk).update(merged_into=people["mario"])

    assert people["anna"] not in patients_visible_to(everyone)
    assert people["anna"] in patients_visible_to(everyone, include_merged=True)
    assert found(everyone, "anna") == set()
    # the merged record itself still opens (it shows where it went)
    assert patient_get_for(everyone, people["anna"].pk) == people["anna"]


def test_patient_get_for_raises_404_outside_scope(people, site_a):
    rome_only = staff_user(sites=[site_a])

    assert patient_get_for(rome_only, str(people["mario"].pk)) == people["mario"]
    for pk in [people["lucja"].pk, 999_999, "abc", None]:
        with pytest.raises(Http404):
            patient_get_for(rome_only, pk)
    with pytest.raises(Http404):
        patient_get_for(None, people["mario"].pk)


# --- PostgreSQL: lookups are index scans -------------------------------------------------------

@pytest.fixture
def crowd(site_a):
    """A few thousand patients with phones and emails, analysed so the planner knows the sizes."""
    patients = Patient.objects.bulk_create(
        Patient(organization_id=site_a.organization_id, home_site=site_a, given_name=f"Given{i}",
                family_name=f"Family{i}", search_name=fold(f"Given{i} Family{i}"), date_of_birth=dt.date(1970, 1, 1)
                + dt.timedelta(days=i))
        for i in range(4000)
    )
    PatientIdentifier.objects.bulk_create(PatientIdentifier(patient=p, value=f"MRN{i:06d}") for i, p in enumerate(patients))
    ContactPoint.objects.bulk_create(
        [ContactPoint(patient=p, kind=ContactKind.PHONE, value=f"+3933{i:08d}", is_primary=True)
         for i, p in enumerate(patients)]
        + [ContactPoint(patient=p, kind=ContactKind.EMAIL, value=f"p{i}@example.org", is_primary=True)
           for i, p in enumerate(patients)]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE patients_patient")
        cursor.execute("ANALYZE patients_contactpoint")
        cursor.execute("ANALYZE patients_patientidentifier")
    return patients


@pytest.mark.postgres
def test_postgres_search_by_phone_email_birth_date_or_mrn_uses_an_index(crowd, everyone):
    cases = [
        ("+39 33 0000 1234", "contactpoint_lookup"),
        ("3300001234", "contactpoint_lookup"),
        ("p1234@example.org", "contactpoint_lookup"),
        ("P1234@Example.org", "contactpoint_lookup"),
        ("1973-05-19", "date_of_birth"),
        ("MRN001234", "identifier_value"),
    ]
    for query, index in cases:
        qs = patient_search(patients_visible_to(everyone), query)

        plan = qs.explain()

        assert [p.pk for p in qs] == [crowd[1234].pk], query
        assert index in plan, plan
        assert "Seq Scan on patients_contactpoint" not in plan, plan
        assert "Seq Scan on patients_patientidentifier" not in plan, plan
        if index != "identifier_value":  # an MRN is also tried as a name: see the trigram test
            assert "Seq Scan on patients_patient " not in plan, plan


@pytest.mark.postgres
def test_postgres_name_search_can_use_the_trigram_index(crowd, everyone):
    # A few thousand rows are cheap to scan, so the planner may; forbidding scans shows the query
    # is shaped so the trigram index can serve it (an `OR pk IN (…)` would leave it unusable).
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        qs = patient_search(patients_visible_to(everyone), "Given1234 FAMILY1234")

        plan = qs.explain()

        assert [p.pk for p in qs] == [crowd[1234].pk]
    assert "patient_search_name_trgm" in plan, plan
