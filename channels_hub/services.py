"""Writes for the transport layer."""

from __future__ import annotations

from django.db import transaction

from channels_hub.models import ChannelAccount
from clinics.models import Site


@transaction.atomic
def channel_account_create(
    *, site: Site, channel: str, provider: str, sender: str = "", messaging_service_sid: str = "",
    credentials_env: str = "TWILIO",
) -> ChannelAccount:
    """Bind a site's channel to a provider; the previous active account for it is deactivated."""
    account = ChannelAccount(site=site, channel=channel, provider=provider, sender=sender.strip(),
                             messaging_service_sid=messaging_service_sid.strip(), credentials_env=credentials_env)
    account.full_clean(validate_constraints=False)
    ChannelAccount.objects.filter(site=site, channel=channel, is_active=True).update(is_active=False)
    account.save()
    return account
