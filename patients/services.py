"""Writes to Patient 360. Every change to the profile is recorded as a PatientChange."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from clinics.models import Site, User
from config.errors import DomainError
from patients.models import (
    ChangeSource,
    ContactKind,
    ContactPoint,
    Patient,
    PatientChange,
    PatientIdentifier,
    PatientMerge,
)
from patients.normalize import fold, normalize_email, normalize_phone, phone_type

PROFILE_FIELDS = (
    "given_name", "family_name", "preferred_name", "date_of_birth", "sex", "gender_identity", "pronouns",
    "language", "time_zone", "home_site", "notes",
)
PREFERENCE_FIELDS = ("preferred_channels", "language", "quiet_hours_start", "quiet_hours_end", "time_zone")


def _label(actor: User | None) -> str:
    if actor is None:
        return ""
    member = getattr(actor, "staff_member", None)
    return (member.display_name if member and member.display_name else actor.email) or ""


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, models.Model):
        return str(value)
    return value


def _refresh_search_name(patient: Patient) -> None:
    patient.search_name = fold(" ".join(filter(None, [patient.given_name, patient.family_name, patient.preferred_name])))


def _record_change(*, patient: Patient, actor: User | None, source: str, summary: str, changes: dict) -> None:
    PatientChange.objects.create(
        patient=patient, at=timezone.now(), actor=actor, actor_label=_label(actor), source=source,
        summary=summary, changes={k: [_jsonable(a), _jsonable(b)] for k, (a, b) in changes.items()},
    )


@transaction.atomic
def patient_create(
    *, home_site: Site, given_name: str, family_name: str, actor: User | None = None, source: str = ChangeSource.STAFF,
    contact_points: list[dict] | None = None, mrn: str = "", **fields: Any,
) -> Patient:
    """Create a patient with optional contact points and MRN. Raises ValidationError naming the field."""
    unknown = set(fields) - set(PROFILE_FIELDS) - set(PREFERENCE_FIELDS)
    if unknown:
        raise ValidationError({sorted(unknown)[0]: _("Unknown field.")})
    fields.setdefault("language", home_site.language)
    patient = Patient(
        organization_id=home_site.organization_id, home_site=home_site, given_name=given_name.strip(),
        family_name=family_name.strip(), **fields,
    )
    _refresh_search_name(patient)
    patient.full_clean()
    patient.save()
    for cp in contact_points or []:
        contact_point_add(patient=patient, actor=actor, source=source, record=False, **cp)
    if mrn:
        identifier_add(patient=patient, system="mrn", value=mrn)
    _record_change(patient=patient, actor=actor, source=source, summary=gettext_noop("Patient created"), changes={})
    return patient


@transaction.atomic
def patient_update(*, patient: Patient, actor: User | None, source: str, **fields: Any) -> Patient:
    """Change profile or preference fields; records what changed (old and new values).

    Locks the patient row (select_for_update) and writes only the changed columns, so concurrent
    edits of other fields, or a merge, are never overwritten with stale values.
    """
    allowed = set(PROFILE_FIELDS) | set(PREFERENCE_FIELDS)
    unknown = set(fields) - allowed
    if unknown:
        raise ValidationError({sorted(unknown)[0]: _("Unknown field.")})
    current = Patient.objects.select_for_update().select_related("home_site").get(pk=patient.pk)
    if current.is_merged:
        raise DomainError(_("This patient was merged into another record."), status=409)
    changes = {}
    for name, value in fields.items():
        old = getattr(current, name)
        if old != value:
            changes[name] = (old, value)
            setattr(current, name, value)
    if not changes:
        return current
    _refresh_search_name(current)
    current.full_clean()
    current.save(update_fields=[*changes, "search_name", "updated_at"])
    for name in [*changes, "search_name", "updated_at"]:  # the caller's copy shows the new values too
        setattr(patient, name, getattr(current, name))
    only_prefs = set(changes) <= set(PREFERENCE_FIELDS)
    _record_change(
        patient=current, actor=actor, source=source, changes=changes,
        summary=gettext_noop("Contact preferences changed") if only_prefs else gettext_noop("Profile changed"),
    )
    return current


def _normalise_contact(kind: str, value: str, region: str) -> str:
    if kind not in ContactKind.values:
        raise ValidationError({"kind": _("Choose one of: %(kinds)s.") % {"kinds": ", ".join(ContactKind.values)}})
    if kind == ContactKind.EMAIL:
        from django.core.validators import validate_email

        email = normalize_email(value)
        try:
            validate_email(email)
        except ValidationError:
            raise ValidationError({"value": _("Enter a valid email address.")}) from None
        return email
    try:
        return normalize_phone(value, region)
    except ValidationError as exc:
        raise ValidationError({"value": exc.messages}) from None


@transaction.atomic
def contact_point_add(
    *, patient: Patient, kind: str, value: str, actor: User | None = None, source: str = ChangeSource.STAFF,
    is_primary: bool = False, is_verified: bool = False, label: str = "", record: bool = True,
) -> ContactPoint:
    normalised = _normalise_contact(kind, value, patient.home_site.phone_region)
    cp = ContactPoint(
        patient=patient, kind=kind, value=normalised, is_primary=is_primary, is_verified=is_verified, label=label[:50],
        phone_type=phone_type(normalised) if kind != ContactKind.EMAIL else "",
    )
    if kind == ContactKind.WHATSAPP and cp.phone_type == "landline":
        raise ValidationError({"value": _("A WhatsApp number must be a mobile number.")})
    if not ContactPoint.objects.filter(patient=patient, kind=kind).exists():
        cp.is_primary = True
    try:
        with transaction.atomic():
            cp.save()
    except IntegrityError:
        raise DomainError(_("This patient already has this contact point."), field="value", status=409) from None
    if cp.is_primary:
        ContactPoint.objects.filter(patient=patient, kind=kind).exclude(pk=cp.pk).update(is_primary=False)
    if record:
        _record_change(
            patient=patient, actor=actor, source=source, summary=gettext_noop("Contact point added"),
            changes={f"{kind}": (None, normalised)},
        )
    return cp


@transaction.atomic
def contact_point_set_primary(*, contact_point: ContactPoint, actor: User | None, source: str) -> ContactPoint:
    ContactPoint.objects.filter(patient_id=contact_point.patient_id, kind=contact_point.kind).update(is_primary=False)
    ContactPoint.objects.filter(pk=contact_point.pk).update(is_primary=True)
    contact_point.is_primary = True
    _record_change(patient=contact_point.patient, actor=actor, source=source, summary=gettext_noop("Primary contact changed"),
                   changes={contact_point.kind: (None, contact_point.value)})
    return contact_point


def contact_point_invalidate(*, contact_point: ContactPoint, reason: str, actor: User | None = None,
                             source: str = ChangeSource.SYSTEM) -> None:
    """Mark a number or address as not working (bounced, not a mobile). Kept, never deleted."""
    updated = ContactPoint.objects.filter(pk=contact_point.pk, is_valid=True).update(
        is_valid=False, invalid_reason=reason[:200], invalidated_at=timezone.now()
    )
    if updated:
        contact_point.is_valid = False
        contact_point.invalid_reason = reason[:200]
        _record_change(patient=contact_point.patient, actor=actor, source=source, summary=gettext_noop("Contact point marked invalid"),
                       changes={contact_point.kind: (contact_point.value, reason[:200])})


def contact_point_revalidate(*, contact_point: ContactPoint, actor: User | None, source: str) -> None:
    ContactPoint.objects.filter(pk=contact_point.pk).update(is_valid=True, invalid_reason="", invalidated_at=None)
    contact_point.is_valid = True
    _record_change(patient=contact_point.patient, actor=actor, source=source, summary=gettext_noop("Contact point marked valid"),
                   changes={contact_point.kind: (None, contact_point.value)})


def identifier_add(*, patient: Patient, system: str, value: str) -> PatientIdentifier:
    value = value.strip()
    if not value:
        raise ValidationError({"mrn": _("This field may not be blank.")})
    obj, _created = PatientIdentifier.objects.get_or_create(patient=patient, system=system.strip() or "mrn", value=value)
    return obj


def _move_contact_points(survivor: Patient, loser: Patient) -> int:
    """Move the loser's contact points; one the survivor already has is folded into the survivor's row.

    Nothing stays on the loser: inbound matching by number must find the survivor only. A moved
    point stays primary only where the survivor had no point of that kind.
    """
    moved = 0
    existing = {(c.kind, c.value): c for c in ContactPoint.objects.filter(patient=survivor)}
    survivor_kinds = {kind for kind, _value in existing}
    for cp in ContactPoint.objects.filter(patient=loser):
        twin = existing.get((cp.kind, cp.value))
        if twin is None:
            ContactPoint.objects.filter(pk=cp.pk).update(
                patient=survivor, is_primary=cp.is_primary and cp.kind not in survivor_kinds
            )
            moved += 1
            continue
        if cp.is_verified and not twin.is_verified:
            ContactPoint.objects.filter(pk=twin.pk).update(is_verified=True)
        ContactPoint.objects.filter(pk=cp.pk).delete()
    return moved


def _move_identifiers(survivor: Patient, loser: Patient) -> int:
    moved = 0
    existing = set(PatientIdentifier.objects.filter(patient=survivor).values_list("system", "value"))
    for ident in PatientIdentifier.objects.filter(patient=loser):
        if (ident.system, ident.value) not in existing:
            PatientIdentifier.objects.filter(pk=ident.pk).update(patient=survivor)
            moved += 1
        else:
            PatientIdentifier.objects.filter(pk=ident.pk).delete()  # the survivor holds the same identifier
    return moved


# Relations with their own rule; any other foreign key to Patient is simply re-pointed, so the
# appointments and messages of later apps move without this function knowing them.
_CUSTOM_MOVES = {ContactPoint: _move_contact_points, PatientIdentifier: _move_identifiers}


def _reverse_relations():
    """Every relation pointing at Patient, hidden ones included (related_name="+", and the FK of
    each many-to-many's through table, which carries the many-to-many rows)."""
    return [f for f in Patient._meta.get_fields(include_hidden=True) if f.auto_created and not f.concrete
            and not f.many_to_many]


def _repoint(model, field: str, survivor: Patient, loser: Patient) -> int:
    rows = model._base_manager.filter(**{field: loser})
    if model._meta.auto_created:
        # A many-to-many through table: a link the survivor already has would be a duplicate row.
        other = next(f.name for f in model._meta.fields if f.is_relation and f.name != field)
        rows.filter(**{f"{other}__in": model._base_manager.filter(**{field: survivor}).values(other)}).delete()
    return rows.update(**{field: survivor})


@transaction.atomic
def patient_merge(*, survivor: Patient, loser: Patient, actor: User | None) -> PatientMerge:
    """Merge `loser` into `survivor`: every related row moves, the loser stays as merged-into.

    Models may declare `merge_strategy`: "keep" (audit rows that record what happened to the loser
    record, e.g. the access log) or a callable `merge_copy(survivor, loser) -> int` (append-only
    ledgers, which get copies instead of edits). Locks both patients (select_for_update).
    """
    if survivor.pk == loser.pk:
        raise ValidationError({"loser": _("A patient cannot be merged into itself.")})
    locked = {p.pk: p for p in Patient.objects.select_for_update().filter(pk__in=[survivor.pk, loser.pk])}
    survivor, loser = locked[survivor.pk], locked[loser.pk]
    if survivor.organization_id != loser.organization_id:
        raise ValidationError({"loser": _("Patients of different organisations cannot be merged.")})
    if loser.is_merged or survivor.is_merged:
        raise DomainError(_("One of these patients was already merged."), field="loser", status=409)

    moved: dict[str, int] = {}
    for rel in _reverse_relations():
        model = rel.related_model
        if model is Patient or not (rel.one_to_many or (rel.one_to_one and hasattr(model, "merge_copy"))):
            continue
        strategy = getattr(model, "merge_strategy", "move")
        label = model._meta.label_lower
        if strategy == "keep":
            continue
        if model in _CUSTOM_MOVES:
            count = _CUSTOM_MOVES[model](survivor, loser)
        elif hasattr(model, "merge_copy"):
            count = model.merge_copy(survivor=survivor, loser=loser)
        else:
            count = _repoint(model, rel.field.name, survivor, loser)
        moved[label] = moved.get(label, 0) + count
    Patient.objects.filter(pk=loser.pk).update(merged_into=survivor)
    loser.merged_into = survivor
    merge = PatientMerge.objects.create(survivor=survivor, loser=loser, actor=actor, at=timezone.now(), moved=moved)
    _record_change(patient=survivor, actor=actor, source=ChangeSource.STAFF, summary=gettext_noop("Duplicate record merged in"),
                   changes={"merged_from": (None, loser.pk)})
    return merge


def portal_account_ensure(*, email: str) -> User | None:
    """Before a portal sign-in code is sent to `email`: the portal account for that address, created
    on first use, if an (unmerged) patient holds it as a valid email. None otherwise, and for staff.

    Creating it reveals and grants nothing: what the account may open is decided at every request
    by `portal_patients_for` (the patients holding the address), and only a signed-in account,
    which has proven the mailbox with the emailed code, is asked. Callers must not let the answer
    show, so whether an email is known is not revealed to whoever typed it.
    """
    normalised = normalize_email(email)
    if not normalised:
        return None
    held = ContactPoint.objects.filter(
        kind=ContactKind.EMAIL, value=normalised, is_valid=True, patient__merged_into__isnull=True
    ).exists()
    if not held:
        return None
    user = User.objects.filter(email=normalised).first()
    if user is None:
        try:
            with transaction.atomic():
                user = User.objects.create_user(email=normalised, password=None)  # sign-in by code only
        except IntegrityError:  # a concurrent request created it between the lookup and the insert
            user = User.objects.get(email=normalised)
    if user.is_clinic_staff or user.is_staff:
        return None  # a staff (or Django admin) account is never a portal account
    return user
