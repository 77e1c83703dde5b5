"""may_contact: the one consent decision every send goes through."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from consent.models import ConsentAction, ConsentEvent, Purpose
from patients.models import Channel, Patient

# Channels and purposes that always need an explicit opt-in, whatever CONSENT_MODE says.
OPT_IN_CHANNELS = {Channel.WHATSAPP}
OPT_IN_PURPOSES = {Purpose.MARKETING}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # "granted", "revoked", "no_opt_in", "opt_out_mode", "merged"

    def __bool__(self) -> bool:
        return self.allowed


def needs_opt_in(channel: str, purpose: str) -> bool:
    if channel in OPT_IN_CHANNELS or purpose in OPT_IN_PURPOSES:
        return True
    return settings.CONSENT_MODE == "strict"


def may_contact(patient: Patient, channel: str, purpose: str, at: dt.datetime | None = None) -> Decision:
    """May we message `patient` on `channel` for `purpose` at time `at` (default: now)?

    The latest ledger event for (channel, purpose) at `at` decides; with none, the answer depends on
    whether that pair needs an explicit opt-in (WhatsApp, marketing, and care/surveys in strict mode).
    """
    return may_contact_many([(patient, channel, purpose)], at=at)[0]


def may_contact_many(checks: list[tuple[Patient, str, str]], *, at: dt.datetime | None = None) -> list[Decision]:
    """`may_contact` for many (patient, channel, purpose) at once, in one query. Same rules."""
    for _patient, channel, purpose in checks:
        if channel not in Channel.values or purpose not in Purpose.values:
            raise ValueError(f"unknown channel/purpose {channel!r}/{purpose!r}")
    at = at or timezone.now()
    patient_ids = {p.pk for p, _c, _u in checks if p.merged_into_id is None}
    latest: dict[tuple[int, str, str], str] = {}
    if patient_ids:
        rows = (
            ConsentEvent.objects.filter(patient_id__in=patient_ids, at__lte=at)
            .order_by("at", "id").values_list("patient_id", "channel", "purpose", "action")
        )
        for patient_id, channel, purpose, action in rows:
            latest[(patient_id, channel, purpose)] = action
    out = []
    for patient, channel, purpose in checks:
        if patient.merged_into_id is not None:
            out.append(Decision(False, "merged"))
            continue
        action = latest.get((patient.pk, channel, purpose))
        if action == ConsentAction.REVOKE:
            out.append(Decision(False, "revoked"))
        elif action == ConsentAction.GRANT:
            out.append(Decision(True, "granted"))
        elif needs_opt_in(channel, purpose):
            out.append(Decision(False, "no_opt_in"))
        else:
            out.append(Decision(True, "opt_out_mode"))
    return out
