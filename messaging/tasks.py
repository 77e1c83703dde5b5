"""Celery tasks: thin, take ids or nothing, safe to run twice."""

from __future__ import annotations

import datetime as dt
import logging

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from messaging import dispatch as spine

log = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def dispatch() -> int:
    """Deliver one batch of due messages; a full batch hands the next one to a sibling task."""
    limit = settings.DISPATCH_BATCH_SIZE
    ids = spine.claim(limit)
    if len(ids) == limit:
        _enqueue_next()  # more are due: another worker process claims the next batch in parallel
    if ids:
        spine.deliver(ids)
    if len(ids) < limit:
        # Drained. Clear the pending flag *then* look again, so a message committed meanwhile
        # either sees the flag gone (and kicks) or is seen here.
        try:
            cache.delete(spine.PENDING_FLAG)
        except Exception:  # Redis down: the flag expires on its own, the relay keeps dispatching
            log.warning("could not clear the dispatch flag", exc_info=True)
        if spine.due_exists():
            spine.kick()
    return len(ids)


def _enqueue_next() -> None:
    """Hand the next batch to a sibling. A broker outage here must not abandon the batch this task
    has just claimed (it would sit in `sending` until its lease ran out): deliver it anyway and
    let the relay restart the chain."""
    try:
        dispatch.delay()
    except Exception:
        log.warning("could not enqueue the next dispatch task; the relay will", exc_info=True)


@shared_task(ignore_result=True)
def relay() -> None:
    """Periodic safety net: due rows whose kick was lost, stuck claims, unknown outcomes, inbound
    events whose processing task was lost."""
    # Each step on its own: a fault in one (a misconfigured account, the broker away) must not
    # hold up the others, above all the inbound events, where a STOP may be waiting.
    for step in (spine.reconcile, _dispatch_if_due, _requeue_inbound):
        try:
            step()
        except Exception:
            log.exception("relay step %s failed", step.__name__)


def _dispatch_if_due() -> None:
    if spine.due_exists():
        dispatch.delay()


def _requeue_inbound() -> None:
    from channels_hub.inbound import inbound_event_enqueue, inbound_pending

    for event_id in inbound_pending(dt.timedelta(seconds=60)):
        inbound_event_enqueue(event_id)
