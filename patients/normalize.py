"""Normalising what people type: phone numbers to E.164, emails, names for search."""

from __future__ import annotations

import unicodedata

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


class PhoneType:
    MOBILE = "mobile"
    LANDLINE = "landline"
    UNKNOWN = "unknown"


def parse_phone(raw: str, region: str | None = None) -> phonenumbers.PhoneNumber:
    """Parse `raw` (any format a person types) or raise ValidationError naming the reason."""
    text = (raw or "").strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, (region or settings.PHONE_DEFAULT_REGION).upper())
    except phonenumbers.NumberParseException:
        raise ValidationError(_("Enter a valid phone number, for example +39 06 1234 5678."), code="invalid_phone") from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(_("This is not a valid phone number."), code="invalid_phone")
    return number


def normalize_phone(raw: str, region: str | None = None) -> str:
    return phonenumbers.format_number(parse_phone(raw, region), phonenumbers.PhoneNumberFormat.E164)


def phone_type(e164: str) -> str:
    kind = phonenumbers.number_type(phonenumbers.parse(e164))
    if kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        return PhoneType.MOBILE
    if kind == phonenumbers.PhoneNumberType.FIXED_LINE:
        return PhoneType.LANDLINE
    return PhoneType.UNKNOWN


def format_phone(e164: str) -> str:
    try:
        return phonenumbers.format_number(phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        return e164


def phone_candidates(raw: str, regions: list[str]) -> list[str]:
    """Every E.164 reading of `raw` across `regions` (for search: the user gave no country)."""
    found: list[str] = []
    for region in [*regions, settings.PHONE_DEFAULT_REGION]:
        try:
            e164 = normalize_phone(raw, region)
        except ValidationError:
            continue
        if e164 not in found:
            found.append(e164)
    return found


def normalize_email(raw: str) -> str:
    return (raw or "").strip().lower()


def fold(text: str) -> str:
    """Lower-case, accent-free, single-spaced: 'Łucja  Wójcik' -> 'lucja wojcik'."""
    text = (text or "").replace("ł", "l").replace("Ł", "L")
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.lower().split())
