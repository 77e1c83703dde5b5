"""Provider credentials come from the environment, named by a channel account's prefix."""

from __future__ import annotations

import os
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class TwilioCredentials:
    account_sid: str
    auth_token: str


def twilio_credentials(prefix: str = "TWILIO") -> TwilioCredentials:
    """The default prefix reads settings (themselves from the environment); others read os.environ."""
    prefix = (prefix or "TWILIO").upper()
    if prefix == "TWILIO":
        sid, token = settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN
    else:
        sid, token = os.environ.get(f"{prefix}_ACCOUNT_SID", ""), os.environ.get(f"{prefix}_AUTH_TOKEN", "")
    if not sid or not token:
        raise ImproperlyConfigured(f"{prefix}_ACCOUNT_SID and {prefix}_AUTH_TOKEN must be set for this channel account")
    return TwilioCredentials(sid, token)


def twilio_token_for_account_sid(account_sid: str) -> str | None:
    """The auth token of the configured Twilio account with this SID (to check webhook signatures)."""
    if account_sid and account_sid == settings.TWILIO_ACCOUNT_SID:
        return settings.TWILIO_AUTH_TOKEN or None
    for key, value in os.environ.items():
        if key.endswith("_ACCOUNT_SID") and value == account_sid:
            return os.environ.get(key[: -len("_ACCOUNT_SID")] + "_AUTH_TOKEN") or None
    return None
