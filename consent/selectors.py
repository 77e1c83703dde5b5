"""Reads of the consent ledger and access log."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone

from consent.models import AccessLog, ConsentAction, ConsentEvent, Purpose
from patients.models import Channel, Patient


@dataclass(frozen=True)
class ConsentState:
    channel: str
    purpose: str
    granted: bool | None  # None: the patient never said
    event: ConsentEvent | None


def consent_events(patient: Patient) -> QuerySet[ConsentEvent]:
    return ConsentEvent.objects.filter(patient=patient).select_related("actor").order_by("-at", "-id")


def consent_latest(patient: Patient, *, at: dt.datetime | None = None) -> dict[tuple[str, str], ConsentEvent]:
    """The latest event per (channel, purpose) at time `at` (default: now), in one query.

    Events dated after `at` do not count yet, exactly as in consent.policy.may_contact.
    """
    qs = ConsentEvent.objects.filter(patient=patient, at__lte=at or timezone.now())
    latest: dict[tuple[str, str], ConsentEvent] = {}
    for event in qs.order_by("at", "id"):
        latest[(event.channel, event.purpose)] = event
    return latest


def consent_matrix(patient: Patient) -> list[ConsentState]:
    """Every channel x purpose with its current state, for display."""
    latest = consent_latest(patient)
    out = []
    for channel in Channel.values:
        for purpose in Purpose.values:
            event = latest.get((channel, purpose))
            granted = None if event is None else event.action == ConsentAction.GRANT
            out.append(ConsentState(channel=channel, purpose=purpose, granted=granted, event=event))
    return out


def access_log_for(patient: Patient) -> QuerySet[AccessLog]:
    return AccessLog.objects.filter(patient=patient).order_by("-at", "-id")
