"""Writes to the consent ledger and the access log. Nothing here updates or deletes a row."""

from __future__ import annotations

import datetime as dt
import ipaddress

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from clinics.models import ApiKey, User
from config.errors import DomainError
from consent.models import AccessLog, ConsentAction, ConsentEvent, ConsentSource, Purpose
from consent.wording import current_wording
from patients.models import Channel, Patient


def _actor_label(actor: User | None, api_key: ApiKey | None, source: str) -> str:
    if api_key is not None:
        return f"API: {api_key.name}"
    if actor is not None:
        member = getattr(actor, "staff_member", None)
        if member is not None:
            return member.display_name or actor.email
        # A superuser made with createsuperuser (or a Django-admin user) has no StaffMember row,
        # but is clinic staff, not a patient.
        if actor.is_superuser or actor.is_staff:
            return actor.get_full_name() or actor.email
        return _("Patient (%(email)s)") % {"email": actor.email}
    return str(ConsentSource(source).label)


# Peers whose X-Forwarded-For we believe: a reverse proxy on this host unless TRUSTED_PROXIES says more.
_DEFAULT_TRUSTED_PROXIES = ("127.0.0.0/8", "::1/128")


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None


def _trusted_proxy(ip) -> bool:
    networks = getattr(settings, "TRUSTED_PROXIES", None) or _DEFAULT_TRUSTED_PROXIES
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


def client_ip(request) -> str | None:
    """The client's address, never a value the client can forge or the database would refuse.

    X-Forwarded-For is read only when the direct peer is a trusted proxy (settings.TRUSTED_PROXIES,
    default loopback), right to left: the first hop that is not itself a trusted proxy is the client.
    Anyone can prepend entries to the header, so its leftmost value proves nothing.
    """
    if request is None:
        return None
    peer = _ip(request.META.get("REMOTE_ADDR"))
    if peer is None:
        return None
    client = peer
    if _trusted_proxy(peer):
        hops = [h for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
        for hop in reversed(hops):
            ip = _ip(hop)
            if ip is None:
                break  # garbage in the chain: stop at the last address we could trust
            client = ip
            if not _trusted_proxy(ip):
                break
    return str(client)


def consent_record(
    *, patient: Patient, channel: str, purpose: str, action: str, source: str, actor: User | None = None,
    api_key: ApiKey | None = None, at: dt.datetime | None = None, ip_address: str | None = None,
    wording_version: str | None = None, note: str = "",
) -> ConsentEvent:
    """Append one consent statement. Raises ValidationError naming a bad field."""
    if channel not in Channel.values:
        raise ValidationError({"channel": _("Choose one of: %(v)s.") % {"v": ", ".join(Channel.values)}})
    if purpose not in Purpose.values:
        raise ValidationError({"purpose": _("Choose one of: %(v)s.") % {"v": ", ".join(Purpose.values)}})
    if action not in ConsentAction.values:
        raise ValidationError({"action": _("Choose one of: %(v)s.") % {"v": ", ".join(ConsentAction.values)}})
    if source not in ConsentSource.values:
        raise ValidationError({"source": _("Unknown source.")})
    if patient.is_merged:
        raise DomainError(_("This patient was merged into another record."), status=409)
    now = timezone.now()
    if at is not None and at > now + dt.timedelta(minutes=5):
        raise ValidationError({"at": _("Consent cannot be recorded in the future.")})
    version, text = current_wording(purpose)
    if wording_version and wording_version != version:
        text = ""  # an older wording: keep the version the caller showed, not today's text
    return ConsentEvent.objects.create(
        patient=patient, channel=channel, purpose=purpose, action=action, source=source, actor=actor, api_key=api_key,
        actor_label=_actor_label(actor, api_key, source), at=at or now, ip_address=ip_address,
        wording_version=wording_version or version, wording_text=text if action == ConsentAction.GRANT else "",
        note=note[:300],
    )


def consent_grant(**kwargs) -> ConsentEvent:
    return consent_record(action=ConsentAction.GRANT, **kwargs)


def consent_revoke(**kwargs) -> ConsentEvent:
    return consent_record(action=ConsentAction.REVOKE, **kwargs)


@transaction.atomic
def consent_revoke_channel(*, patient: Patient, channel: str, source: str, note: str = "", **kwargs) -> list[ConsentEvent]:
    """Withdraw every purpose on one channel (STOP, a provider's 'unsubscribed' report)."""
    return [
        consent_record(patient=patient, channel=channel, purpose=p, action=ConsentAction.REVOKE, source=source,
                       note=note, **kwargs)
        for p in Purpose.values
    ]


def access_log_record(
    *, patient: Patient, what: str, actor: User | ApiKey | None, request=None,
) -> AccessLog:
    """Record that `actor` read `what` of the patient's record (call on every read path)."""
    return access_log_record_many(patients=[patient], what=what, actor=actor, request=request)[0]


def access_log_record_many(
    *, patients: list[Patient], what: str, actor: User | ApiKey | None, request=None,
) -> list[AccessLog]:
    """`access_log_record` for several patients read at once (a list page), in one INSERT: one row
    per patient, however often the page shows them."""
    patients = list({p.pk: p for p in patients}.values())
    if not patients:
        return []
    api_key = actor if isinstance(actor, ApiKey) else None
    user = actor if isinstance(actor, User) else None
    label = _actor_label(user, api_key, ConsentSource.STAFF) if (user or api_key) else _("Unknown")
    ip, path = client_ip(request), (request.get_full_path()[:300] if request is not None else "")
    return AccessLog.objects.bulk_create([
        AccessLog(patient=p, actor=user, api_key=api_key, actor_label=label, what=what[:50], ip_address=ip, path=path)
        for p in patients
    ])
