"""Safe placeholder rendering for message templates, and SMS segment counting.

Templates use `{{ name }}` only: no logic, no attribute access, nothing a template author could
use to reach data. Which names a template may use depends on its purpose, so a body can carry the
time, the place and a portal link but not a diagnosis. A name the purpose does not allow is an
error when the template is saved; a name missing from the context is an error at send time.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

PLACEHOLDER = re.compile(r"{{\s*([a-z_][a-z0-9_]*)\s*}}")
ANY_BRACES = re.compile(r"{{.*?}}|{%.*?%}", re.S)

_COMMON = {"first_name", "site_name", "site_phone", "site_address", "portal_link", "clinic_name"}
ALLOWED_VARIABLES: dict[str, set[str]] = {
    "care": _COMMON | {"when", "date", "time", "practitioner", "service", "confirm_keyword", "cancel_keyword",
                       "reschedule_link", "text"},
    "surveys": _COMMON | {"survey_link", "when", "scale"},
    "marketing": _COMMON | {"campaign_link", "text"},
}


def placeholders(text: str) -> list[str]:
    return PLACEHOLDER.findall(text or "")


def validate_template(template) -> None:
    """Raise ValidationError naming the field if the template uses what its purpose does not allow."""
    allowed = ALLOWED_VARIABLES.get(template.purpose, _COMMON)
    for field in ("subject", "body"):
        text = getattr(template, field) or ""
        stray = [m for m in ANY_BRACES.findall(text) if not PLACEHOLDER.fullmatch(m)]
        if stray:
            raise ValidationError({field: _("Only {{ name }} placeholders are allowed, not %(bad)s.") % {"bad": stray[0]}})
        unknown = sorted(set(placeholders(text)) - allowed)
        if unknown:
            raise ValidationError({field: _("%(names)s cannot be used in a %(purpose)s message. Allowed: %(allowed)s.")
                                   % {"names": ", ".join(unknown), "purpose": template.purpose,
                                      "allowed": ", ".join(sorted(allowed))}})
    variables = template.whatsapp_variables or []
    if not isinstance(variables, list) or any(v not in allowed for v in variables):
        raise ValidationError({"whatsapp_variables": _("List context names allowed for this purpose, in order.")})
    if template.whatsapp_content_sid and not re.fullmatch(r"HX[0-9a-fA-F]{32}", template.whatsapp_content_sid):
        raise ValidationError({"whatsapp_content_sid": _("A Twilio ContentSid starts with HX and has 34 characters.")})


class MissingVariable(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def placeholder_value(name: str, context: dict) -> str:
    """The text for placeholder `name`; MissingVariable when it is absent or None."""
    if name not in context or context[name] is None:
        raise MissingVariable(name)
    return str(context[name])


def render(text: str, context: dict) -> str:
    return PLACEHOLDER.sub(lambda match: placeholder_value(match.group(1), context), text or "")


GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXT = set("^{}\\[~]|€")


def sms_segments(text: str) -> dict:
    """{"encoding": "GSM-7"|"UCS-2", "characters": n, "segments": n} as a phone network counts them."""
    if all(c in GSM7 or c in GSM7_EXT for c in text):
        units = sum(2 if c in GSM7_EXT else 1 for c in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
        single, multi, encoding = 70, 67, "UCS-2"
    segments = 1 if units <= single else -(-units // multi)
    return {"encoding": encoding, "characters": units, "segments": segments if text else 0}
