"""Portal forms: they parse what the patient typed; the services decide and write."""

from __future__ import annotations

import functools
import zoneinfo

from allauth.account.forms import RequestLoginCodeForm
from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from clinics.models import Language
from config.errors import DomainError
from consent.models import ConsentAction, Purpose
from patients.models import Channel, Patient
from patients.services import portal_account_ensure


class PortalRequestLoginCodeForm(RequestLoginCodeForm):
    """allauth's "send me a code" form, preceded by creating the portal account on demand.

    A patient whose valid email is on file gets their account just before allauth looks the email
    up, so nobody has to create it for them; what it opens is decided after the code is entered.
    Staff accounts are treated like unknown emails: the portal never signs staff in. Either way the response is the same (allauth sends an
    "unknown account" mail instead of a code), so the page never tells whether an email is known.
    """

    def clean_email(self) -> str:
        email = self.cleaned_data.get("email")
        if email:
            portal_account_ensure(email=email)
        email = super().clean_email()
        user = getattr(self, "_user", None)
        if user is not None and (user.is_clinic_staff or user.is_staff):
            self._user = None
        return email


class ProfileForm(forms.Form):
    """What a patient may change about themselves; the rest is kept by the clinic."""

    preferred_name = forms.CharField(
        label=_("Preferred name"), max_length=100, required=False,
        help_text=_("What you would like us to call you."),
    )
    pronouns = forms.CharField(
        label=_("Pronouns"), max_length=50, required=False, help_text=_("For example: she/her, he/him, they/them."),
    )

    def clean_preferred_name(self) -> str:
        return self.cleaned_data["preferred_name"].strip()

    def clean_pronouns(self) -> str:
        return self.cleaned_data["pronouns"].strip()


@functools.cache
def _time_zone_names() -> tuple[str, ...]:
    """Real places (Area/City) plus UTC; leaves out the legacy aliases zoneinfo also lists."""
    names = {
        n for n in zoneinfo.available_timezones()
        if "/" in n and not n.startswith(("Etc/", "SystemV/", "US/", "posix/", "right/"))
    }
    return tuple(sorted(names | {"UTC"}))


CHANNEL_POSITIONS = ("channel_1", "channel_2", "channel_3")


class PreferencesForm(forms.Form):
    """Contact preferences: channel order, language, quiet hours, time zone."""

    channel_1 = forms.ChoiceField(label=_("First choice"), choices=Channel.choices)
    channel_2 = forms.ChoiceField(label=_("Second choice"), choices=Channel.choices)
    channel_3 = forms.ChoiceField(label=_("Third choice"), choices=Channel.choices)
    language = forms.ChoiceField(
        label=_("Language"), choices=Language.choices,
        help_text=_("The language of our messages to you and of this portal."),
    )
    quiet_hours_start = forms.TimeField(
        label=_("From"), widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    quiet_hours_end = forms.TimeField(
        label=_("Until"), widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text=_("We hold non-urgent messages during these hours. The same time twice means no quiet hours."),
    )
    time_zone = forms.ChoiceField(label=_("Time zone"), required=False)

    def __init__(self, *args, patient: Patient, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        names = _time_zone_names()
        if patient.time_zone and patient.time_zone not in names:
            names = (patient.time_zone, *names)  # a legacy name set by the clinic stays selectable
        self.fields["time_zone"].choices = [
            ("", _("Same as my clinic (%(tz)s)") % {"tz": patient.home_site.time_zone}),
            *((name, name.replace("_", " ")) for name in names),
        ]

    @classmethod
    def initial_for(cls, patient: Patient) -> dict:
        order = [c for c in patient.preferred_channels if c in Channel.values]
        order += [c for c in Channel.values if c not in order]
        return {
            **dict(zip(CHANNEL_POSITIONS, order, strict=False)),
            "language": patient.language,
            "quiet_hours_start": patient.quiet_hours_start,
            "quiet_hours_end": patient.quiet_hours_end,
            "time_zone": patient.time_zone,
        }

    def clean(self):
        cleaned = super().clean()
        seen: dict[str, str] = {}
        for position in CHANNEL_POSITIONS:
            channel = cleaned.get(position)
            if not channel:
                continue
            if channel in seen:
                self.add_error(
                    position,
                    _("You already chose %(channel)s above; pick each channel once.")
                    % {"channel": Channel(channel).label},
                )
            else:
                seen[channel] = position
        return cleaned

    def service_fields(self) -> dict:
        """The cleaned data as `patient_update` keyword arguments."""
        data = self.cleaned_data
        return {
            "preferred_channels": [data[p] for p in CHANNEL_POSITIONS],
            "language": data["language"],
            "quiet_hours_start": data["quiet_hours_start"],
            "quiet_hours_end": data["quiet_hours_end"],
            "time_zone": data["time_zone"],
        }


class ConsentChangeForm(forms.Form):
    """One switch of the consent matrix: grant or withdraw one channel x purpose."""

    channel = forms.ChoiceField(choices=Channel.choices)
    purpose = forms.ChoiceField(choices=Purpose.choices)
    action = forms.ChoiceField(choices=ConsentAction.choices)
    wording_version = forms.CharField(max_length=50)


def apply_service_error(form: forms.Form, exc: ValidationError | DomainError) -> None:
    """Show a service's refusal on the form, on the field it names when the form has that field."""
    if isinstance(exc, DomainError):
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
        return
    form.add_error(None, exc.messages)
