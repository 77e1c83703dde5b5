"""Small display helpers for console templates: `{% load console %}`."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import timezone

from patients.normalize import format_phone

register = template.Library()


@register.filter
def phone(value: str) -> str:
    """+390612345678 -> +39 06 1234 5678 (anything unparsable is shown as stored)."""
    return format_phone(value) if value and value.startswith("+") else value


@register.filter
def contact_value(contact_point) -> str:
    return contact_point.value if contact_point.kind == "email" else phone(contact_point.value)


@register.filter
def age(date_of_birth: dt.date | None) -> int | None:
    if not date_of_birth:
        return None
    today = timezone.localdate()
    return today.year - date_of_birth.year - ((today.month, today.day) < (date_of_birth.month, date_of_birth.day))


@register.inclusion_tag("console/_field.html")
def field(bound_field, css: str = ""):
    """One form field: label, help text and errors, tied to the input with aria-describedby
    (Django's field group does the wiring; this adds the wrapper the stylesheet lays out)."""
    return {"field": bound_field, "css": css}


# url name -> the navigation entry it belongs to (anything else in the console is "patients").
_NAV_SECTIONS = {
    "inbox": "inbox", "conversation": "inbox",
    "messages": "messages", "message": "messages", "sandbox": "messages", "sandbox_reply": "messages",
}


@register.simple_tag(takes_context=True)
def nav_section(context) -> str:
    """Which top-level console entry the current page belongs to, for aria-current."""
    match = getattr(context.get("request"), "resolver_match", None)
    if match is None or match.app_name != "console":
        return ""
    return _NAV_SECTIONS.get(match.url_name, "patients")
