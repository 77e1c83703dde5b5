"""Staff console: patient search and Patient 360.

Views parse input, call a service or selector and render. Every page is scoped with
`patients_visible_to` / `patient_get_for` (404 outside the user's sites); writes need
`actor_can_write` (clinicians are read-only) and merges `StaffMember.can_merge` (403 otherwise).
"""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from clinics.selectors import actor_can_write, sites_for
from config.errors import DomainError
from consent.models import ConsentSource, Purpose
from consent.policy import needs_opt_in
from consent.selectors import access_log_for, consent_events, consent_matrix
from consent.services import access_log_record, client_ip, consent_record
from console.forms import (
    ConsentForm,
    ContactPointForm,
    InvalidateForm,
    PatientCreateForm,
    PatientForm,
    PreferencesForm,
    SearchForm,
    add_service_errors,
)
from patients.models import ChangeSource, Channel, ContactKind, ContactPoint, Patient
from patients.registry import timeline_sources
from patients.selectors import (
    patient_duplicates,
    patient_export,
    patient_get_for,
    patient_search,
    patient_timeline,
    patients_visible_to,
    portal_accounts_of,
)
from patients.services import (
    contact_point_add,
    contact_point_invalidate,
    contact_point_revalidate,
    contact_point_set_primary,
    patient_create,
    patient_merge,
    patient_update,
)

PAGE_SIZE = 25
SERVICE_ERRORS = (ValidationError, DomainError)


def staff_required(view):
    """Signed-in clinic staff only (403 for a portal user); pages holding PHI are never cached."""

    @login_required
    @never_cache
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not getattr(request.user, "is_clinic_staff", False):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


def can_merge(user) -> bool:
    member = user.staff_member
    return user.is_superuser or bool(member and member.can_merge)


def _require_write(user) -> None:
    if not actor_can_write(user):
        raise PermissionDenied


def _writable_patient(request, pk) -> Patient:
    """The patient for a write: 404 outside scope, then 403 for read-only roles."""
    patient = patient_get_for(request.user, pk)
    _require_write(request.user)
    return patient


def _detail_url(patient: Patient, anchor: str = "") -> str:
    return reverse("console:patient", args=[patient.pk]) + (f"#{anchor}" if anchor else "")


# --- Search -----------------------------------------------------------------------------------

def _with_contacts(patients: list[Patient]) -> list[Patient]:
    """Attach the primary phone, email and MRN shown in a result row (from prefetched rows)."""
    for p in patients:
        points = [c for c in p.contact_points.all() if c.is_valid]
        phones = [c for c in points if c.kind in (ContactKind.PHONE, ContactKind.WHATSAPP)]
        phones.sort(key=lambda c: (not c.is_primary, c.kind != ContactKind.PHONE, c.pk))
        emails = [c for c in points if c.kind == ContactKind.EMAIL]
        emails.sort(key=lambda c: (not c.is_primary, c.pk))
        p.row_phone = phones[0].value if phones else ""
        p.row_email = emails[0].value if emails else ""
        p.row_mrns = [i.value for i in p.identifiers.all()]
    return patients


@staff_required
@require_GET
def home(request):
    """Patient search: one box for name, phone, email, birth date or MRN, plus a site filter."""
    user = request.user
    form = SearchForm(request.GET or None, sites=sites_for(user))
    patients = patients_visible_to(user)
    query = ""
    if form.is_bound and form.is_valid():
        query = form.cleaned_data["q"]
        if form.cleaned_data["site"] is not None:
            patients = patients.filter(home_site=form.cleaned_data["site"])
        patients = patient_search(patients, query)
    patients = patients.order_by("family_name", "given_name", "pk").prefetch_related("contact_points", "identifiers")
    page = Paginator(patients, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "form": form, "page": page, "patients": _with_contacts(list(page.object_list)), "query": query,
        "can_write": actor_can_write(user),
    }
    if request.htmx and request.htmx.target == "results" and not request.htmx.history_restore_request:
        response = render(request, "console/_results.html", context)
    else:
        response = render(request, "console/home.html", context)
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


# --- Patient 360 ------------------------------------------------------------------------------

DUPLICATE_REASONS = {
    "same_phone_and_birth_date": gettext_lazy("same phone and date of birth"),
    "same_email": gettext_lazy("same email"),
    "similar_name_and_birth_date": gettext_lazy("similar name and same date of birth"),
}


def _consent_rows(patient: Patient) -> list[dict]:
    """The consent matrix as rows (channels) of cells (purposes), each with what an empty state means."""
    by_channel: dict[str, list] = {}
    for state in consent_matrix(patient):
        by_channel.setdefault(state.channel, []).append(
            {"state": state, "purpose": Purpose(state.purpose).label,
             "needs_opt_in": needs_opt_in(state.channel, state.purpose)}
        )
    return [{"channel": Channel(ch).label, "code": ch, "cells": cells} for ch, cells in by_channel.items()]


def _visible_duplicates(request, patient: Patient) -> list[dict]:
    """Likely duplicates, limited to records this user may see (names elsewhere stay hidden)."""
    found = patient_duplicates(patient)
    if not found:
        return []
    visible = set(patients_visible_to(request.user).filter(pk__in=[p.pk for p, _r in found]).values_list("pk", flat=True))
    return [
        {"patient": p, "reason": DUPLICATE_REASONS.get(reason, reason)} for p, reason in found if p.pk in visible
    ]


def _contacts_context(request, patient: Patient) -> dict:
    return {
        "patient": patient,
        "contact_points": list(patient.contact_points.all()),
        "can_write": actor_can_write(request.user) and not patient.is_merged,
        "contact_form": ContactPointForm(),
    }


@staff_required
@require_GET
def patient_detail(request, pk):
    """Patient 360. Opening it is a read of the record, so it is written to the access log first."""
    patient = patient_get_for(request.user, pk)
    access_log_record(patient=patient, what="view_360", actor=request.user, request=request)
    kinds = set(timeline_sources()) - {"access"}  # reads have their own section below
    context = {
        **_contacts_context(request, patient),
        "identifiers": list(patient.identifiers.all()),
        "portal_accounts": list(portal_accounts_of(patient).values_list("email", "last_login")),
        "channel_order": [Channel(c).label for c in patient.preferred_channels if c in Channel.values],
        "purposes": [label for _v, label in Purpose.choices],
        "consent_rows": _consent_rows(patient),
        "consent_history": list(consent_events(patient)[:200]),
        "timeline": patient_timeline(patient, limit=50, kinds=kinds),
        "access_log": list(access_log_for(patient).select_related("actor")[:50]),
        "duplicates": [] if patient.is_merged else _visible_duplicates(request, patient),
        "can_merge": can_merge(request.user) and not patient.is_merged,
        "consent_form": ConsentForm(),
        "time_zone": patient.tz,
    }
    return render(request, "console/patient_detail.html", context)


@staff_required
@require_GET
def patient_export_view(request, pk):
    """Everything held about the patient as a JSON download (GDPR access/portability)."""
    patient = patient_get_for(request.user, pk)
    access_log_record(patient=patient, what="export", actor=request.user, request=request)
    response = JsonResponse(patient_export(patient), json_dumps_params={"indent": 2, "ensure_ascii": False})
    response["Content-Disposition"] = f'attachment; filename="patient-{patient.pk}-export.json"'
    return response


# --- Profile and preferences ------------------------------------------------------------------

@staff_required
@require_http_methods(["GET", "POST"])
def patient_new(request):
    _require_write(request.user)
    sites = sites_for(request.user)
    first = sites.first()
    initial = {"home_site": first, "language": first.language} if first else {}
    form = PatientCreateForm(request.POST or None, sites=sites, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            patient = patient_create(
                actor=request.user, source=ChangeSource.STAFF, contact_points=form.contact_points(),
                mrn=form.cleaned_data["mrn"], **form.profile_fields(),
            )
        except SERVICE_ERRORS as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Patient created."))
            return redirect(_detail_url(patient))
    return render(request, "console/patient_form.html", {"form": form, "patient": None})


@staff_required
@require_http_methods(["GET", "POST"])
def patient_edit(request, pk):
    patient = _writable_patient(request, pk)
    initial = {name: getattr(patient, name) for name in PatientForm.base_fields}
    form = PatientForm(request.POST or None, sites=sites_for(request.user), initial=initial)
    if request.method == "GET":
        access_log_record(patient=patient, what="profile", actor=request.user, request=request)
    if request.method == "POST" and form.is_valid():
        try:
            patient_update(patient=patient, actor=request.user, source=ChangeSource.STAFF, **form.profile_fields())
        except SERVICE_ERRORS as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Profile saved."))
            return redirect(_detail_url(patient))
    return render(request, "console/patient_form.html", {"form": form, "patient": patient})


@staff_required
@require_http_methods(["GET", "POST"])
def patient_preferences(request, pk):
    patient = _writable_patient(request, pk)
    form = PreferencesForm(request.POST or None, initial=PreferencesForm.initial_for(patient),
                           site_time_zone=patient.home_site.time_zone)
    if request.method == "GET":
        access_log_record(patient=patient, what="preferences", actor=request.user, request=request)
    if request.method == "POST" and form.is_valid():
        try:
            patient_update(patient=patient, actor=request.user, source=ChangeSource.STAFF, **form.preference_fields())
        except SERVICE_ERRORS as exc:
            add_service_errors(form, exc, aliases={"preferred_channels": "channel_1"})
        else:
            messages.success(request, _("Contact preferences saved."))
            return redirect(_detail_url(patient, "preferences"))
    return render(request, "console/preferences_form.html", {"form": form, "patient": patient})


# --- Contact points ---------------------------------------------------------------------------

@staff_required
@require_http_methods(["GET", "POST"])
def contact_add(request, pk):
    patient = _writable_patient(request, pk)
    form = ContactPointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            contact_point_add(patient=patient, actor=request.user, source=ChangeSource.STAFF, **form.cleaned_data)
        except SERVICE_ERRORS as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Contact point added."))
            return redirect(_detail_url(patient, "contacts"))
    return render(request, "console/contact_form.html", {"form": form, "patient": patient})


def _contact_action(request, pk, cp_pk, action) -> object:
    patient = _writable_patient(request, pk)
    contact_point = get_object_or_404(ContactPoint.objects.select_related("patient"), pk=cp_pk, patient=patient)
    if patient.is_merged:
        messages.error(request, _("This patient was merged into another record."))
    else:
        action(contact_point)
    if request.htmx:
        return render(request, "console/_contacts.html", _contacts_context(request, patient))
    return redirect(_detail_url(patient, "contacts"))


@staff_required
@require_POST
def contact_set_primary(request, pk, cp_pk):
    return _contact_action(request, pk, cp_pk, lambda cp: contact_point_set_primary(
        contact_point=cp, actor=request.user, source=ChangeSource.STAFF))


@staff_required
@require_POST
def contact_invalidate(request, pk, cp_pk):
    form = InvalidateForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else _("Marked invalid by staff")
    return _contact_action(request, pk, cp_pk, lambda cp: contact_point_invalidate(
        contact_point=cp, reason=reason, actor=request.user, source=ChangeSource.STAFF))


@staff_required
@require_POST
def contact_revalidate(request, pk, cp_pk):
    return _contact_action(request, pk, cp_pk, lambda cp: contact_point_revalidate(
        contact_point=cp, actor=request.user, source=ChangeSource.STAFF))


# --- Consent ----------------------------------------------------------------------------------

@staff_required
@require_http_methods(["GET", "POST"])
def consent_add(request, pk):
    """Record a grant or withdrawal the patient gave staff (in person, on paper, by phone)."""
    patient = _writable_patient(request, pk)
    form = ConsentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            consent_record(patient=patient, source=ConsentSource.STAFF, actor=request.user,
                           ip_address=client_ip(request), **form.cleaned_data)
        except SERVICE_ERRORS as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Consent recorded."))
            return redirect(_detail_url(patient, "consent"))
    return render(request, "console/consent_form.html", {"form": form, "patient": patient})


# --- Merge ------------------------------------------------------------------------------------

@staff_required
@require_http_methods(["GET", "POST"])
def patient_merge_view(request, pk, other_pk):
    """Merge `other_pk` (the duplicate) into `pk` (the record that stays), after a side-by-side check."""
    survivor = patient_get_for(request.user, pk)
    loser = patient_get_for(request.user, other_pk)
    if not can_merge(request.user):
        raise PermissionDenied
    error = ""
    if request.method == "POST":
        try:
            patient_merge(survivor=survivor, loser=loser, actor=request.user)
        except SERVICE_ERRORS as exc:
            error = exc.message if isinstance(exc, DomainError) else " ".join(exc.messages)
        else:
            messages.success(request, _("%(loser)s was merged into this record.") % {"loser": loser.full_name})
            return redirect(_detail_url(survivor))
    elif survivor.pk == loser.pk:
        error = _("A patient cannot be merged into itself.")
    elif survivor.is_merged or loser.is_merged:
        error = _("One of these patients was already merged.")
    if request.method == "GET":
        for shown in {survivor.pk: survivor, loser.pk: loser}.values():
            access_log_record(patient=shown, what="merge_review", actor=request.user, request=request)
    records = [
        {"role": _("Stays"), "patient": survivor, **_merge_facts(survivor)},
        {"role": _("Merged in, then closed"), "patient": loser, **_merge_facts(loser)},
    ]
    return render(request, "console/merge_confirm.html", {
        "survivor": survivor, "loser": loser, "records": records, "error": error,
    }, status=409 if error else 200)


def _merge_facts(patient: Patient) -> dict:
    return {
        "contact_points": list(patient.contact_points.all()),
        "identifiers": list(patient.identifiers.all()),
        "consent_count": consent_events(patient).count(),
    }
