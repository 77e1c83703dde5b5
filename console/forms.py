"""Forms of the staff console. They parse input only; views hand the cleaned data to services."""

from __future__ import annotations

import zoneinfo
from functools import lru_cache

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

from clinics.models import Language, Site, validate_time_zone
from config.errors import DomainError
from consent.models import ConsentAction, Purpose
from patients.models import MAX_NOTES, Channel, ContactKind, Sex, validate_date_of_birth
from patients.normalize import normalize_email, normalize_phone


def add_service_errors(form: forms.Form, exc: ValidationError | DomainError, aliases: dict | None = None) -> None:
    """Put a service's ValidationError/DomainError on the form: on the field it names, else on top."""
    if isinstance(exc, DomainError):
        errors = exc.as_dict()
    elif hasattr(exc, "message_dict"):
        errors = exc.message_dict
    else:
        errors = {"__all__": exc.messages}
    for field, messages in errors.items():
        field = (aliases or {}).get(field, field)
        target = field if field in form.fields else None
        for message in messages:
            form.add_error(target, message)


@lru_cache(maxsize=1)
def _time_zone_choices() -> list[tuple[str, str]]:
    """Real places (Area/City) plus UTC; leaves out the legacy aliases zoneinfo also lists."""
    names = {
        n for n in zoneinfo.available_timezones()
        if "/" in n and not n.startswith(("Etc/", "SystemV/", "US/", "posix/", "right/"))
    }
    return [(tz, tz) for tz in sorted(names | {"UTC"})]


class TimeZoneField(forms.ChoiceField):
    """Offers the usual names, and accepts any the model accepts (the API may have set a legacy one)."""

    def valid_value(self, value) -> bool:
        if super().valid_value(value):
            return True
        try:
            validate_time_zone(value)
        except ValidationError:
            return False
        return True


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%d", **kwargs)


class TimeInput(forms.TimeInput):
    input_type = "time"

    def __init__(self, **kwargs):
        super().__init__(format="%H:%M", **kwargs)


class SearchForm(forms.Form):
    q = forms.CharField(
        label=_("Search patients"), required=False, max_length=200,
        widget=forms.TextInput(attrs={
            "type": "search", "autocomplete": "off", "spellcheck": "false",
            "placeholder": _("Name, phone, email, date of birth or MRN"),
        }),
    )
    site = forms.ModelChoiceField(label=_("Site"), queryset=Site.objects.none(), required=False,
                                  empty_label=_("All my sites"))

    def __init__(self, *args, sites, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["site"].queryset = sites


class PatientForm(forms.Form):
    """The profile: who the patient is. Preferences have their own form."""

    given_name = forms.CharField(label=_("Given name"), max_length=100)
    family_name = forms.CharField(label=_("Family name"), max_length=100)
    preferred_name = forms.CharField(label=_("Preferred name"), max_length=100, required=False)
    date_of_birth = forms.DateField(label=_("Date of birth"), required=False, widget=DateInput(),
                                    input_formats=["%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y"],
                                    validators=[validate_date_of_birth])
    sex = forms.ChoiceField(label=_("Sex"), choices=Sex.choices, initial=Sex.UNKNOWN)
    gender_identity = forms.CharField(label=_("Gender identity"), max_length=100, required=False,
                                      help_text=_("As the patient states it."))
    pronouns = forms.CharField(label=_("Pronouns"), max_length=50, required=False)
    language = forms.ChoiceField(label=_("Language"), choices=Language.choices)
    home_site = forms.ModelChoiceField(label=_("Home site"), queryset=Site.objects.none(), empty_label=None)
    notes = forms.CharField(label=_("Notes"), required=False, max_length=MAX_NOTES,
                            widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, sites, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["home_site"].queryset = sites

    def profile_fields(self) -> dict:
        data = dict(self.cleaned_data)
        for name in ("phone", "email", "mrn"):
            data.pop(name, None)
        return data


class PatientCreateForm(PatientForm):
    phone = forms.CharField(label=_("Mobile or phone"), required=False, max_length=40,
                            widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "off"}),
                            help_text=_("Any format; without a country prefix it is read as the home site's country."))
    email = forms.CharField(label=_("Email"), required=False, max_length=254,
                            widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    mrn = forms.CharField(label=_("MRN"), required=False, max_length=100,
                          help_text=_("Medical record number in the clinical system."))

    field_order = ["given_name", "family_name", "date_of_birth", "phone", "email", "mrn", "home_site", "language"]

    def clean_email(self) -> str:
        email = normalize_email(self.cleaned_data.get("email", ""))
        if email:
            validate_email(email)
        return email

    def clean(self):
        data = super().clean()
        phone, site = (data.get("phone") or "").strip(), data.get("home_site")
        if phone and site is not None:
            try:
                normalize_phone(phone, site.phone_region)
            except ValidationError as exc:
                self.add_error("phone", exc.messages)
        return data

    def contact_points(self) -> list[dict]:
        points = []
        if self.cleaned_data.get("phone"):
            points.append({"kind": ContactKind.PHONE, "value": self.cleaned_data["phone"]})
        if self.cleaned_data.get("email"):
            points.append({"kind": ContactKind.EMAIL, "value": self.cleaned_data["email"]})
        return points


class PreferencesForm(forms.Form):
    """How and when the patient wants to be contacted. Channel order is three ranked choices,
    so it can be edited without JavaScript."""

    channel_1 = forms.ChoiceField(label=_("First choice"), choices=Channel.choices)
    channel_2 = forms.ChoiceField(label=_("Second choice"), choices=[("", "—"), *Channel.choices], required=False)
    channel_3 = forms.ChoiceField(label=_("Third choice"), choices=[("", "—"), *Channel.choices], required=False)
    language = forms.ChoiceField(label=_("Language"), choices=Language.choices)
    quiet_hours_start = forms.TimeField(label=_("Quiet hours from"), widget=TimeInput())
    quiet_hours_end = forms.TimeField(label=_("Quiet hours until"), widget=TimeInput(),
                                      help_text=_("No messages in this window, except urgent ones. Same time twice: none."))
    time_zone = TimeZoneField(label=_("Time zone"), required=False)

    def __init__(self, *args, site_time_zone: str, **kwargs):
        super().__init__(*args, **kwargs)
        choices = _time_zone_choices()
        current = self.initial.get("time_zone") or ""
        if current and (current, current) not in choices:
            choices = [(current, current), *choices]  # the patient's own zone stays selected, not replaced
        self.fields["time_zone"].choices = [
            ("", _("Home site's time zone (%(tz)s)") % {"tz": site_time_zone}), *choices
        ]

    @classmethod
    def initial_for(cls, patient) -> dict:
        order = list(patient.preferred_channels) + ["", "", ""]
        return {
            "channel_1": order[0], "channel_2": order[1], "channel_3": order[2], "language": patient.language,
            "quiet_hours_start": patient.quiet_hours_start, "quiet_hours_end": patient.quiet_hours_end,
            "time_zone": patient.time_zone,
        }

    def clean(self):
        data = super().clean()
        order = [data.get(f"channel_{i}") for i in (1, 2, 3)]
        order = [c for c in order if c]
        if len(set(order)) != len(order):
            self.add_error("channel_2", _("Each channel may appear only once."))
        data["preferred_channels"] = order
        return data

    def preference_fields(self) -> dict:
        d = self.cleaned_data
        return {
            "preferred_channels": d["preferred_channels"], "language": d["language"],
            "quiet_hours_start": d["quiet_hours_start"], "quiet_hours_end": d["quiet_hours_end"],
            "time_zone": d.get("time_zone") or "",
        }


class ContactPointForm(forms.Form):
    kind = forms.ChoiceField(label=_("Kind"), choices=ContactKind.choices)
    value = forms.CharField(label=_("Number or address"), max_length=254)
    label = forms.CharField(label=_("Label"), max_length=50, required=False,
                            widget=forms.TextInput(attrs={"placeholder": _("e.g. mother's mobile")}))
    is_primary = forms.BooleanField(label=_("Make primary"), required=False)


class InvalidateForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=200, initial=_("Marked invalid by staff"))


class ConsentForm(forms.Form):
    channel = forms.ChoiceField(label=_("Channel"), choices=Channel.choices)
    purpose = forms.ChoiceField(label=_("Purpose"), choices=Purpose.choices)
    action = forms.ChoiceField(label=_("Decision"), choices=ConsentAction.choices,
                               widget=forms.RadioSelect, initial=ConsentAction.GRANT)
    note = forms.CharField(label=_("How it was given"), max_length=300, required=False,
                           widget=forms.TextInput(attrs={"placeholder": _("e.g. signed paper form at reception")}))
