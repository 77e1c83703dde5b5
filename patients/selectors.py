"""Reads of Patient 360: scoped lookup, search, duplicates, timeline, export."""

from __future__ import annotations

import datetime as dt
import heapq
import re
from itertools import islice

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404

from clinics.models import ApiKey, Site, User
from clinics.selectors import site_ids_for
from patients.models import ContactKind, ContactPoint, Patient, PatientIdentifier
from patients.normalize import fold, normalize_email, phone_candidates
from patients.registry import TimelineEntry, export_sections, timeline_sources

_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y", "%d-%m-%Y")
_PHONEISH = re.compile(r"^[\d\s()+./-]{6,}$")


def patients_visible_to(actor: User | ApiKey | None, *, include_merged: bool = False) -> QuerySet[Patient]:
    qs = Patient.objects.filter(home_site_id__in=site_ids_for(actor)).select_related("home_site")
    return qs if include_merged else qs.filter(merged_into__isnull=True)


def patient_get_for(actor: User | ApiKey | None, pk) -> Patient:
    """The patient if `actor` may see it; Http404 otherwise (never reveal that it exists)."""
    try:
        return patients_visible_to(actor, include_merged=True).get(pk=int(pk))
    except (Patient.DoesNotExist, ValueError, TypeError):
        raise Http404 from None


def parse_date(text: str) -> dt.date | None:
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text.strip(), fmt).date()  # noqa: DTZ007  a date, no time part
        except ValueError:
            continue
    return None


def patient_search(qs: QuerySet[Patient], query: str) -> QuerySet[Patient]:
    """Filter `qs` by whatever the user typed: email, phone in any format, birth date, MRN or name.

    Every branch is an indexed lookup: contact points by (kind, value), identifiers by value,
    date of birth by its index, names by the folded search_name (trigram GIN on PostgreSQL).
    """
    text = (query or "").strip()
    if not text:
        return qs
    if "@" in text:
        ids = ContactPoint.objects.filter(kind=ContactKind.EMAIL, value=normalize_email(text)).values("patient_id")
        return qs.filter(pk__in=ids)
    birth = parse_date(text)
    if birth is not None:
        return qs.filter(date_of_birth=birth)
    # Candidates are one UNION of ids, not `a OR pk IN (…)`: an OR across a subquery makes
    # PostgreSQL scan every patient instead of using the contact point and trigram indexes.
    mrn_ids = PatientIdentifier.objects.filter(value=text).order_by().values("patient_id")
    if _PHONEISH.match(text):
        regions = list(Site.objects.filter(pk__in=qs.values("home_site_id")).values_list("phone_region", flat=True).distinct())
        numbers = phone_candidates(text, regions)
        phone_ids = ContactPoint.objects.filter(
            kind__in=[ContactKind.PHONE, ContactKind.WHATSAPP], value__in=numbers
        ).order_by().values("patient_id")
        return qs.filter(pk__in=phone_ids.union(mrn_ids))
    tokens = fold(text).split()
    if not tokens:
        return qs.filter(pk__in=mrn_ids)
    name_ids = Patient.objects.filter(*[Q(search_name__contains=t) for t in tokens]).order_by().values("pk")
    return qs.filter(pk__in=name_ids.union(mrn_ids))


def patient_duplicates(patient: Patient, *, limit: int = 20) -> list[tuple[Patient, str]]:
    """Likely duplicates of `patient` in its organisation, each with the reason it matched."""
    base = Patient.objects.filter(organization_id=patient.organization_id, merged_into__isnull=True).exclude(pk=patient.pk)
    found: dict[int, tuple[Patient, str]] = {}
    phones = list(
        ContactPoint.objects.filter(patient=patient, kind__in=[ContactKind.PHONE, ContactKind.WHATSAPP])
        .values_list("value", flat=True)
    )
    emails = list(ContactPoint.objects.filter(patient=patient, kind=ContactKind.EMAIL).values_list("value", flat=True))
    if phones and patient.date_of_birth:
        same_phone = ContactPoint.objects.filter(
            kind__in=[ContactKind.PHONE, ContactKind.WHATSAPP], value__in=phones
        ).values("patient_id")
        for p in base.filter(pk__in=same_phone, date_of_birth=patient.date_of_birth)[:limit]:
            found.setdefault(p.pk, (p, "same_phone_and_birth_date"))
    if emails:
        same_email = ContactPoint.objects.filter(kind=ContactKind.EMAIL, value__in=emails).values("patient_id")
        for p in base.filter(pk__in=same_email)[:limit]:
            found.setdefault(p.pk, (p, "same_email"))
    if patient.date_of_birth:
        own = set(patient.search_name.split())
        for p in base.filter(date_of_birth=patient.date_of_birth)[: limit * 5]:
            other = set(p.search_name.split())
            if own and other and len(own & other) >= min(2, len(own), len(other)) or _similar(patient.search_name, p.search_name):
                found.setdefault(p.pk, (p, "similar_name_and_birth_date"))
    return list(found.values())[:limit]


def _similar(a: str, b: str) -> bool:
    from difflib import SequenceMatcher

    return SequenceMatcher(None, a, b).ratio() >= 0.85


def merged_ids(patient: Patient) -> list[int]:
    """The patient's id and those of every record merged into it (recursively)."""
    ids, frontier = [patient.pk], [patient.pk]
    while frontier:
        frontier = list(Patient.objects.filter(merged_into_id__in=frontier).values_list("pk", flat=True))
        ids.extend(frontier)
    return ids


def patient_timeline(patient: Patient, *, limit: int = 100, kinds: set[str] | None = None) -> list[TimelineEntry]:
    """Everything that happened to the patient (and records merged into it), newest first."""
    ids = merged_ids(patient)
    streams = [
        source(ids, limit) for kind, source in timeline_sources().items() if kinds is None or kind in kinds
    ]
    merged = heapq.merge(*streams, key=lambda e: e.at, reverse=True)
    return list(islice(merged, limit))


def patient_export(patient: Patient) -> dict:
    """All data held about the patient, machine-readable (GDPR art. 15 and 20)."""
    from django.utils import timezone

    data = {"format": "touchpoint.patient-export/1", "exported_at": timezone.now().isoformat()}
    ids = merged_ids(patient)
    for name, section in export_sections().items():
        data[name] = section(patient, ids)
    return data


def portal_patients_for(user: User | None) -> QuerySet[Patient]:
    """The patients a portal account may open: those, not merged away, that hold the account's
    email as a valid contact point.

    A signed-in portal account has proven that mailbox with an emailed code. Access follows the
    record: a parent and children sharing an address share it, and when the clinic marks a
    mistyped address invalid, whoever reads that mailbox sees nothing from the next request on.
    This is the portal's one scoping rule; every portal view loads its patient through it.
    """
    if user is None or not getattr(user, "is_authenticated", False) or user.is_staff or user.is_clinic_staff:
        return Patient.objects.none()
    holds_email = ContactPoint.objects.filter(
        patient=OuterRef("pk"), kind=ContactKind.EMAIL, value=normalize_email(user.email), is_valid=True
    )
    return (
        Patient.objects.filter(Exists(holds_email), merged_into__isnull=True)
        .select_related("home_site")
        .order_by("given_name", "family_name", "pk")
    )


def portal_accounts() -> QuerySet[User]:
    """Every portal account: the users who are not staff (no staff member, no Django staff or superuser)."""
    return User.objects.filter(is_staff=False, is_superuser=False, staffmember__isnull=True)


def portal_accounts_of(patient: Patient) -> QuerySet[User]:
    """The portal accounts that may open `patient`: one per valid email address that has signed in
    or asked for a code (the inverse of `portal_patients_for`)."""
    emails = ContactPoint.objects.filter(patient=patient, kind=ContactKind.EMAIL, is_valid=True).values("value")
    return portal_accounts().filter(email__in=emails).order_by("email")


def portal_patient_get(user: User | None, pk) -> Patient:
    """One of `user`'s portal patients; Http404 for any other id (never reveal that it exists)."""
    try:
        return portal_patients_for(user).get(pk=int(pk))
    except (Patient.DoesNotExist, ValueError, TypeError):
        raise Http404 from None
