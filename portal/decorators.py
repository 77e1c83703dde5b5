"""Who may use the portal, and which patient a request is about."""

from __future__ import annotations

import functools

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from patients.models import Patient
from patients.selectors import portal_patients_for

PATIENT_SESSION_KEY = "portal_patient_id"


def choose_patient(request, patient: Patient) -> None:
    request.session[PATIENT_SESSION_KEY] = patient.pk


def _current_patient(request, patients: list[Patient]) -> Patient | None:
    """The patient chosen in this session; the only one when there is just one."""
    chosen = request.session.get(PATIENT_SESSION_KEY)
    for patient in patients:
        if patient.pk == chosen:
            return patient
    if len(patients) == 1:
        return patients[0]
    return None


def activate_patient_language(request, patient: Patient) -> None:
    """The portal speaks the patient's language, unless they picked one with the switcher."""
    if request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME) in dict(settings.LANGUAGES):
        return
    translation.activate(patient.language)
    request.LANGUAGE_CODE = translation.get_language()


def portal_view(view=None, *, needs_patient: bool = True):
    """A portal page: signed-in patients only, never staff, never cached.

    Sets `request.portal_patients` (the account's patients, through the one scoping rule
    `portal_patients_for`) and `request.portal_patient` (the one chosen in the session). With
    `needs_patient`, a request without a chosen patient is sent to the home page to choose.
    """
    if view is None:
        return functools.partial(portal_view, needs_patient=needs_patient)

    @functools.wraps(view)
    @never_cache
    def wrapper(request, *args, **kwargs):
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("portal:login"))
        if user.is_staff or user.is_clinic_staff:
            return render(request, "portal/staff_forbidden.html", status=403)
        patients = list(portal_patients_for(user))
        patient = _current_patient(request, patients)
        request.portal_patients = patients
        request.portal_patient = patient
        if patient is not None:
            activate_patient_language(request, patient)
        elif needs_patient:
            if patients:
                messages.info(request, _("Choose whose record to open."))
            return redirect("portal:home")
        return view(request, *args, **kwargs)

    return wrapper
