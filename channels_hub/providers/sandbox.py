"""The sandbox provider: 'delivers' into SandboxMessage rows shown in the console's device view.

Used in the embedded mode and demos. Nothing leaves the server; a whole batch is one INSERT.
"""

from __future__ import annotations

import datetime as dt
import uuid

from channels_hub.models import SandboxMessage
from channels_hub.providers import register
from channels_hub.providers.base import Outbound, Provider, SendResult


class _SandboxBase(Provider):
    kind = "sandbox"
    can_lookup = True
    max_body_length = 4096

    def send(self, outbound: Outbound) -> SendResult:
        return self.send_many([outbound])[0]

    def send_many(self, outbounds: list[Outbound]) -> list[SendResult]:
        rows = [
            SandboxMessage(
                channel=self.channel, to=o.to, sender=o.sender or self.account.sender, subject=o.subject,
                body=o.body or _template_text(o), provider_id="SB" + uuid.uuid4().hex, reference=o.reference,
            )
            for o in outbounds
        ]
        SandboxMessage.objects.bulk_create(rows)
        return [SendResult(provider_id=r.provider_id, status="delivered") for r in rows]

    def lookup(self, outbound: Outbound, *, since: dt.datetime, exclude: frozenset[str] = frozenset()
               ) -> SendResult | None:
        row = SandboxMessage.objects.filter(reference=outbound.reference, created_at__gte=since) \
            .exclude(provider_id__in=exclude).first()
        return SendResult(provider_id=row.provider_id, status="delivered") if row else None


def _template_text(o: Outbound) -> str:
    values = ", ".join(f"{k}={v}" for k, v in sorted(o.content_variables.items()))
    return f"[template {o.content_sid}] {values}"


@register
class SandboxSmsProvider(_SandboxBase):
    channel = "sms"
    max_body_length = 1600


@register
class SandboxWhatsAppProvider(_SandboxBase):
    channel = "whatsapp"
    session_window_hours = 24
    supports_templates = True


@register
class SandboxEmailProvider(_SandboxBase):
    channel = "email"
