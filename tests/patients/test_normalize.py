"""What people type, normalised: phones to E.164, emails lower-cased, names folded, dates read."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from patients.normalize import (
    PhoneType,
    fold,
    format_phone,
    normalize_email,
    normalize_phone,
    phone_candidates,
    phone_type,
)
from patients.selectors import parse_date


@pytest.mark.parametrize("raw", [
    "+39 347 123 4567", "3471234567", "347 123 4567", "0039 347-123-4567", "(347) 123 4567", "+39.347.123.4567",
    " +393471234567 ",
])
def test_an_italian_mobile_in_any_format_becomes_e164(raw):
    assert normalize_phone(raw, "IT") == "+393471234567"


@pytest.mark.parametrize(("raw", "region"), [
    ("+48 601 234 567", "IT"), ("601234567", "PL"), ("601 234 567", "pl"), ("0048 601-234-567", "IT"),
])
def test_a_polish_mobile_is_read_with_the_polish_region_or_its_prefix(raw, region):
    assert normalize_phone(raw, region) == "+48601234567"


def test_without_a_region_the_default_region_applies(settings):
    settings.PHONE_DEFAULT_REGION = "PL"

    assert normalize_phone("601234567") == "+48601234567"


@pytest.mark.parametrize("raw", ["", "   ", "12", "hello", "+39 000", "347 123", "+999 1234567"])
def test_an_invalid_phone_raises_a_validation_error(raw):
    with pytest.raises(ValidationError) as exc:
        normalize_phone(raw, "IT")

    assert exc.value.code == "invalid_phone"


@pytest.mark.parametrize(("e164", "kind"), [
    ("+393471234567", PhoneType.MOBILE),
    ("+390612345678", PhoneType.LANDLINE),
    ("+48601234567", PhoneType.MOBILE),
])
def test_phone_type_tells_mobile_from_landline(e164, kind):
    assert phone_type(e164) == kind


def test_format_phone_shows_the_international_form_and_leaves_garbage_alone():
    assert format_phone("+393471234567") == "+39 347 123 4567"
    assert format_phone("not a number") == "not a number"


def test_phone_candidates_reads_the_number_in_every_region_once(settings):
    settings.PHONE_DEFAULT_REGION = "IT"

    assert phone_candidates("601234567", ["PL", "IT"]) == ["+48601234567"]
    assert phone_candidates("+39 347 123 4567", ["PL", "IT"]) == ["+393471234567"]
    assert phone_candidates("0612345678", ["IT"]) == ["+390612345678"]
    assert phone_candidates("nonsense", ["PL"]) == []


def test_normalize_email_trims_and_lower_cases():
    assert normalize_email("  Mario.Rossi@Example.ORG ") == "mario.rossi@example.org"
    assert normalize_email(None) == ""


@pytest.mark.parametrize(("text", "folded"), [
    ("Łucja  Wójcik", "lucja wojcik"),
    ("ŁUKASZ Żółć", "lukasz zolc"),
    ("José Núñez", "jose nunez"),
    ("Niccolò D'Àlessio", "niccolo d'alessio"),
    ("  Anna\tMaria\nBianchi ", "anna maria bianchi"),
    ("", ""),
    (None, ""),
])
def test_fold_lower_cases_strips_accents_and_spaces(text, folded):
    assert fold(text) == folded


@pytest.mark.parametrize("text", ["1975-03-09", "09/03/1975", "9/3/1975", "09.03.1975", "09-03-1975", " 1975-3-9 "])
def test_parse_date_reads_the_usual_formats(text):
    assert parse_date(text) == dt.date(1975, 3, 9)


@pytest.mark.parametrize("text", ["", "31/02/1975", "1975", "3471234567", "Rossi", "03/1975"])
def test_parse_date_returns_none_for_anything_else(text):
    assert parse_date(text) is None
