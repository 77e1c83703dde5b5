"""The patient self-service portal. Views parse, call a service or selector, and render."""

from __future__ import annotations

import json
from dataclasses import dataclass

from allauth.account.views import RequestLoginCodeView
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from config.errors import DomainError
from consent.models import ConsentAction, ConsentSource, Purpose
from consent.policy import needs_opt_in
from consent.selectors import consent_events, consent_matrix
from consent.services import access_log_record, client_ip, consent_grant, consent_revoke
from consent.wording import current_wording
from patients.models import ChangeSource, Channel, ContactKind
from patients.normalize import format_phone
from patients.selectors import patient_export, portal_patient_get
from patients.services import patient_update
from portal.decorators import activate_patient_language, choose_patient, portal_view
from portal.forms import (
    ConsentChangeForm,
    PortalRequestLoginCodeForm,
    PreferencesForm,
    ProfileForm,
    apply_service_error,
)

PORTAL_LOGIN_SESSION_KEY = "portal_login"


class LoginView(RequestLoginCodeView):
    """The "send me a code" page: allauth's login-by-code flow, with portal accounts made on demand."""

    template_name = "account/request_login_code.html"
    extra_context = {"portal": True}

    def get_form_class(self):
        return PortalRequestLoginCodeForm

    def form_valid(self, form):
        self.request.session[PORTAL_LOGIN_SESSION_KEY] = True
        return super().form_valid(form)


login = LoginView.as_view()


@portal_view(needs_patient=False)
def home(request):
    return render(request, "portal/home.html", {"patient": request.portal_patient})


@require_POST
@portal_view(needs_patient=False)
def choose(request, pk):
    patient = portal_patient_get(request.user, pk)
    choose_patient(request, patient)
    return redirect("portal:home")


@require_http_methods(["GET", "POST"])
@portal_view
def profile(request):
    patient = request.portal_patient
    initial = {"preferred_name": patient.preferred_name, "pronouns": patient.pronouns}
    form = ProfileForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            patient_update(patient=patient, actor=request.user, source=ChangeSource.PORTAL, **form.cleaned_data)
        except (ValidationError, DomainError) as exc:
            patient.refresh_from_db()
            apply_service_error(form, exc)
        else:
            messages.success(request, _("Your profile was saved."))
            return redirect("portal:profile")
    contact_points = [
        (cp, cp.value if cp.kind == ContactKind.EMAIL else format_phone(cp.value)) for cp in patient.contact_points.all()
    ]
    return render(request, "portal/profile.html", {"patient": patient, "form": form, "contact_points": contact_points})


@require_http_methods(["GET", "POST"])
@portal_view
def preferences(request):
    patient = request.portal_patient
    form = PreferencesForm(request.POST or None, patient=patient, initial=PreferencesForm.initial_for(patient))
    if request.method == "POST" and form.is_valid():
        try:
            patient_update(patient=patient, actor=request.user, source=ChangeSource.PORTAL, **form.service_fields())
        except (ValidationError, DomainError) as exc:
            patient.refresh_from_db()
            apply_service_error(form, exc)
        else:
            activate_patient_language(request, patient)  # say it in the language just chosen
            messages.success(request, _("Your contact preferences were saved."))
            return redirect("portal:preferences")
    return render(request, "portal/preferences.html", {"patient": patient, "form": form})


@dataclass(frozen=True)
class ConsentSwitch:
    channel: str
    channel_label: str
    on: bool
    by_default: bool  # no statement yet; the state shown is what the policy assumes

    @property
    def next_action(self) -> str:
        return ConsentAction.REVOKE if self.on else ConsentAction.GRANT


@dataclass(frozen=True)
class ConsentGroup:
    purpose: str
    label: str
    wording_version: str
    wording: str
    switches: list[ConsentSwitch]


def _consent_groups(patient) -> list[ConsentGroup]:
    states = {(s.channel, s.purpose): s for s in consent_matrix(patient)}
    groups = []
    for purpose in Purpose:
        version, text = current_wording(purpose)
        switches = []
        for channel in Channel:
            state = states[(channel.value, purpose.value)]
            if state.granted is None:
                switches.append(ConsentSwitch(channel, channel.label, not needs_opt_in(channel, purpose), True))
            else:
                switches.append(ConsentSwitch(channel, channel.label, state.granted, False))
        groups.append(ConsentGroup(purpose.value, purpose.label, version, text, switches))
    return groups


@require_http_methods(["GET", "POST"])
@portal_view
def consents(request):
    patient = request.portal_patient
    if request.method == "POST":
        form = ConsentChangeForm(request.POST)
        if not form.is_valid():
            messages.error(request, _("That change could not be read. Please try again."))
            return redirect("portal:consents")
        data = form.cleaned_data
        version, _text = current_wording(data["purpose"])
        anchor = f"{reverse('portal:consents')}#purpose-{data['purpose']}"
        if data["action"] == ConsentAction.GRANT and data["wording_version"] != version:
            # Agreement counts only for the wording the patient saw; show them the new one first.
            messages.warning(request, _("The wording of this consent has changed. Please read it and choose again."))
            return redirect(anchor)
        record = consent_grant if data["action"] == ConsentAction.GRANT else consent_revoke
        try:
            record(
                patient=patient, channel=data["channel"], purpose=data["purpose"], source=ConsentSource.PORTAL,
                actor=request.user, ip_address=client_ip(request), wording_version=version,
            )
        except (ValidationError, DomainError) as exc:
            messages.error(request, exc.message if isinstance(exc, DomainError) else " ".join(exc.messages))
            return redirect(anchor)
        done = (
            _("%(purpose)s by %(channel)s: turned on.") if data["action"] == ConsentAction.GRANT
            else _("%(purpose)s by %(channel)s: turned off.")
        )
        messages.success(request, done % {"purpose": Purpose(data["purpose"]).label, "channel": Channel(data["channel"]).label})
        return redirect(anchor)
    return render(request, "portal/consents.html", {"patient": patient, "groups": _consent_groups(patient)})


@portal_view
def consent_history(request):
    patient = request.portal_patient
    page = Paginator(consent_events(patient), 50).get_page(request.GET.get("page"))
    return render(request, "portal/consent_history.html", {"patient": patient, "page": page})


@require_http_methods(["GET", "POST"])
@portal_view
def export(request):
    patient = request.portal_patient
    if request.method == "GET":
        return render(request, "portal/export.html", {"patient": patient})
    access_log_record(patient=patient, what="portal_export", actor=request.user, request=request)
    data = patient_export(patient)
    filename = f"touchpoint-my-data-{patient.pk}-{timezone.localdate():%Y-%m-%d}.json"
    response = HttpResponse(
        json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2),
        content_type="application/json; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
