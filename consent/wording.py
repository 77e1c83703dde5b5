"""The consent wording patients are shown, versioned. A new text gets a new version key."""

from django.utils.translation import gettext_lazy as _

from consent.models import Purpose

CURRENT = {
    Purpose.CARE: (
        "care/2026-01",
        _("I agree to receive appointment confirmations, reminders and messages about my care on this channel."),
    ),
    Purpose.SURVEYS: (
        "surveys/2026-01",
        _("I agree to receive short satisfaction surveys after my visits on this channel."),
    ),
    Purpose.MARKETING: (
        "marketing/2026-01",
        _("I agree to receive news about the clinic's services and health campaigns on this channel."),
    ),
}


def current_wording(purpose: str) -> tuple[str, str]:
    version, text = CURRENT[Purpose(purpose)]
    return version, str(text)
