"""Reads for the console's message log, inbox and conversation pages (scoped by site)."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from clinics.selectors import site_ids_for
from messaging.models import Conversation, Message


def scope_q(site_ids, prefix: str = "") -> Q:
    """A patient's conversation belongs to the patient's *current* home site; an unidentified one
    to the site whose number was written to."""
    return Q(**{f"{prefix}patient__home_site_id__in": site_ids}) | Q(
        **{f"{prefix}patient__isnull": True, f"{prefix}site_id__in": site_ids}
    )


def messages_visible_to(actor) -> QuerySet[Message]:
    return Message.objects.filter(scope_q(site_ids_for(actor), "conversation__"))


def conversations_visible_to(actor) -> QuerySet[Conversation]:
    return Conversation.objects.filter(scope_q(site_ids_for(actor)))


def inbox(actor) -> QuerySet[Conversation]:
    """Conversations waiting for staff, oldest wait first."""
    return (
        conversations_visible_to(actor).filter(needs_attention=True)
        .select_related("patient", "site").order_by("last_inbound_at", "id")
    )


def conversation_thread(conversation: Conversation, *, limit: int = 200) -> list[Message]:
    rows = conversation.messages.order_by("-created_at", "-id").prefetch_related("attempts")[:limit]
    return list(reversed(rows))


def last_inbound_channel(conversation: Conversation) -> str | None:
    return (
        conversation.messages.filter(direction="in").order_by("-created_at").values_list("channel", flat=True).first()
    )
