"""Choosing how a message goes out: channel, address, account, wording.

Used when a message is created (message_send) and again when a worker falls back to another
channel after a permanent failure, so both follow exactly the same rules.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from channels_hub.models import ChannelAccount
from channels_hub.providers import provider_class
from consent.policy import Decision
from messaging.models import MessageTemplate
from messaging.rendering import MissingVariable, placeholder_value, render
from patients.models import Channel, ContactKind, ContactPoint, Patient

CONTACT_KIND = {Channel.SMS: ContactKind.PHONE, Channel.WHATSAPP: ContactKind.WHATSAPP, Channel.EMAIL: ContactKind.EMAIL}


@dataclass
class Route:
    channel: str
    address: str
    account: ChannelAccount
    template: MessageTemplate
    subject: str
    body: str
    content_sid: str = ""
    content_variables: dict = field(default_factory=dict)


@dataclass
class Lookups:
    """What routing needs for a batch of patients, fetched with a handful of queries."""

    addresses: dict[tuple[int, str], str]
    accounts: dict[tuple[int, str], ChannelAccount]
    templates: dict[str, list[MessageTemplate]]

    @classmethod
    def load(cls, patients: list[Patient], template_names: set[str]) -> Lookups:
        addresses: dict[tuple[int, str], str] = {}
        rows = (
            ContactPoint.objects.filter(patient__in=patients, is_valid=True)
            .order_by("-is_primary", "id").values_list("patient_id", "kind", "value", "phone_type")
        )
        for patient_id, kind, value, phone_type in rows:
            if kind == ContactKind.PHONE and phone_type == "landline":
                continue  # SMS needs a mobile
            addresses.setdefault((patient_id, kind), value)
        site_ids = {p.home_site_id for p in patients}
        accounts = {
            (a.site_id, a.channel): a for a in ChannelAccount.objects.filter(site_id__in=site_ids, is_active=True)
        }
        templates: dict[str, list[MessageTemplate]] = {}
        for t in MessageTemplate.objects.filter(name__in=template_names, is_active=True):
            templates.setdefault(t.name, []).append(t)
        return cls(addresses, accounts, templates)


def pick_template(variants: list[MessageTemplate], channel: str, languages: list[str]) -> MessageTemplate | None:
    for language in languages:
        for wanted in (channel, ""):
            for t in variants:
                if t.language == language and t.channel == wanted:
                    return t
    return None


def candidate_channels(patient: Patient, explicit: str | None) -> list[str]:
    if explicit:
        return [explicit]
    return [c for c in (patient.preferred_channels or []) if c in Channel.values]


def route(
    *, patient: Patient, purpose: str, template_name: str, context: dict, channels: list[str],
    decisions: dict[str, Decision], lookups: Lookups, window_open: bool,
) -> tuple[Route | None, list[dict]]:
    """The first channel in `channels` we may and can use, and why each earlier one was skipped.

    Raises ValidationError naming `context.<name>` when the template needs a value not given.
    """
    skipped: list[dict] = []
    site = patient.home_site
    languages = list(dict.fromkeys([patient.language, site.language, "en"]))
    for channel in channels:
        decision = decisions[channel]
        if not decision:
            skipped.append({"channel": channel, "skipped": decision.reason})
            continue
        address = lookups.addresses.get((patient.pk, CONTACT_KIND[channel]))
        if address is None:
            skipped.append({"channel": channel, "skipped": "no_valid_address"})
            continue
        account = lookups.accounts.get((site.pk, channel))
        if account is None:
            skipped.append({"channel": channel, "skipped": "no_channel_account"})
            continue
        template = pick_template(lookups.templates.get(template_name, []), channel, languages)
        if template is None:
            skipped.append({"channel": channel, "skipped": "no_template"})
            continue
        provider = provider_class(account.provider, channel)
        content_sid = template.whatsapp_content_sid if provider.supports_templates else ""
        if provider.session_window_hours and not window_open and not content_sid:
            skipped.append({"channel": channel, "skipped": "outside_session_window"})
            continue
        try:
            body = render(template.body, context)
            subject = render(template.subject, context)
            variables = {str(i): placeholder_value(name, context) for i, name in enumerate(template.whatsapp_variables or [], 1)}
        except (MissingVariable, KeyError) as exc:
            name = exc.name if isinstance(exc, MissingVariable) else exc.args[0]
            raise ValidationError({f"context.{name}": _("The template %(t)s needs this value.") % {"t": template_name}}) \
                from None
        if len(body) > provider.max_body_length:
            skipped.append({"channel": channel, "skipped": "body_too_long"})
            continue
        return Route(channel, address, account, template, subject, body, content_sid, variables), skipped
    return None, skipped


def quiet_hours_end(patient: Patient, at: dt.datetime) -> dt.datetime:
    """The first moment at or after `at` outside the patient's quiet hours (DST-safe)."""
    if not patient.in_quiet_hours(at):
        return at
    tz = patient.tz
    local = at.astimezone(tz)
    end = patient.quiet_hours_end
    candidate = dt.datetime.combine(local.date(), end, tzinfo=tz)
    if candidate <= local:
        candidate = dt.datetime.combine(local.date() + dt.timedelta(days=1), end, tzinfo=tz)
    # A wall time skipped by a DST jump is normalised by the round trip through UTC.
    return candidate.astimezone(dt.UTC)
