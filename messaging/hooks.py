"""Extension points of the messaging app that features register into from AppConfig.ready().

- Flows: a feature waiting for the patient's answer (a reminder confirmation, a survey score)
  opens a flow on the conversation; inbound messages are offered to it first.
- Email attachments: e.g. scheduling adds an .ics file to appointment emails.
"""

from __future__ import annotations

from collections.abc import Callable

# handler(conversation, message) -> True if it consumed the message.
FlowHandler = Callable[[object, object], bool]
AttachmentHook = Callable[[object], list[tuple[str, bytes, str]]]

_flows: dict[str, FlowHandler] = {}
_attachment_hooks: dict[str, AttachmentHook] = {}
_fallback_handlers: list[FlowHandler] = []


def register_flow(name: str, handler: FlowHandler) -> None:
    _flows[name] = handler


def flow_handler(name: str) -> FlowHandler | None:
    return _flows.get(name)


def register_fallback_handler(handler: FlowHandler) -> None:
    """Offered inbound messages no open flow took, before the staff inbox (the FAQ/triage bot)."""
    _fallback_handlers.append(handler)


def fallback_handlers() -> list[FlowHandler]:
    return list(_fallback_handlers)


def register_email_attachments(template: str, hook: AttachmentHook) -> None:
    _attachment_hooks[template] = hook


def email_attachments(message) -> list[tuple[str, bytes, str]]:
    hook = _attachment_hooks.get(message.template)
    return hook(message) if hook else []
