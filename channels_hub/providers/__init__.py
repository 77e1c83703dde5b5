"""Provider registry: `provider_for(account)` returns the provider instance for a channel account."""

from __future__ import annotations

from channels_hub.providers.base import Outbound, Provider, SendResult, TransportError

_REGISTRY: dict[tuple[str, str], type[Provider]] = {}


def register(cls: type[Provider]) -> type[Provider]:
    _REGISTRY[(cls.kind, cls.channel)] = cls
    return cls


def provider_class(kind: str, channel: str) -> type[Provider]:
    _load()
    try:
        return _REGISTRY[(kind, channel)]
    except KeyError:
        raise LookupError(f"no provider for {kind}/{channel}") from None


def provider_for(account) -> Provider:
    return provider_class(account.provider, account.channel)(account)


def _load() -> None:
    # Import the provider modules once so their @register decorators run.
    from channels_hub.providers import email, sandbox, twilio  # noqa: F401


__all__ = ["Outbound", "Provider", "SendResult", "TransportError", "provider_for", "provider_class", "register"]
