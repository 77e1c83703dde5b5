"""Workers: claim due outbox rows in batches, hand them to providers, record every attempt.

Exactly once, without an idempotency key at the provider:
1. claim: queued rows -> `sending` with a lease (SELECT … FOR UPDATE SKIP LOCKED, then UPDATE);
2. an attempt row `started` is committed before the provider is called;
3. the outcome is recorded (accepted, retry later, refused, or unknown on a timeout after sending).
If a worker dies anywhere in between, the lease runs out and `reconcile` asks the provider whether
the message exists (lookup by reference/recipient/time) before anything is sent again.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections import defaultdict

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from channels_hub.models import ChannelAccount
from channels_hub.providers import Outbound, SendResult, TransportError, provider_for
from consent.policy import may_contact_many
from messaging.consequences import apply_consequences
from messaging.models import STATUS_RANK, AttemptOutcome, Message, MessageAttempt, MessageStatus
from messaging.routing import Lookups, candidate_channels, quiet_hours_end, route
from patients.models import Channel

log = logging.getLogger(__name__)
PENDING_FLAG = "messaging:dispatch-pending"


def kick() -> None:
    """Make sure a dispatch task is on its way (at most one pending, so bursts cost one task)."""
    from messaging.tasks import dispatch

    try:
        if cache.add(PENDING_FLAG, 1, timeout=300):
            try:
                dispatch.delay()
            except Exception:
                cache.delete(PENDING_FLAG)
                raise
    except Exception:
        # Redis (cache or broker) is down. The rows are safe in the database and the periodic relay
        # dispatches them; a lost kick must not fail the caller's committed work or abandon a batch.
        log.warning("could not enqueue a dispatch task; the relay will pick the messages up", exc_info=True)


def claim_lease_seconds() -> float:
    """How long a fresh claim holds its rows: until the worker renews them group by group, just
    before each group's requests (see `_renew`), so one slow request's worth of slack is enough."""
    return settings.DISPATCH_LEASE_SECONDS + 2 * max(settings.TWILIO_TIMEOUT, settings.EMAIL_TIMEOUT)


def lease_seconds(batch: int, *, timeout: float, parallel: bool = True) -> float:
    """How long a worker may hold `batch` rows of one provider: a connect and a read timeout
    (`timeout` each) per round of requests."""
    rounds = -(-batch // max(1, settings.TWILIO_PARALLEL_REQUESTS)) if parallel else batch
    return settings.DISPATCH_LEASE_SECONDS + rounds * 2 * timeout


def claim(limit: int) -> list[int]:
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(status=MessageStatus.QUEUED, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "id").values_list("id", flat=True)[:limit]
        )
        if ids:
            Message.objects.filter(id__in=ids).update(
                status=MessageStatus.SENDING, claimed_until=now + dt.timedelta(seconds=claim_lease_seconds()),
                attempt_count=F("attempt_count") + 1,
            )
    return ids


def due_exists() -> bool:
    return Message.objects.filter(status=MessageStatus.QUEUED, next_attempt_at__lte=timezone.now()).exists()


def dispatch_once(limit: int | None = None) -> int:
    """Claim one batch and deliver it. Returns how many were claimed."""
    limit = limit or settings.DISPATCH_BATCH_SIZE
    ids = claim(limit)
    if ids:
        deliver(ids)
    return len(ids)


def outbound_for(m: Message, mode: str) -> Outbound:
    callback = ""
    if m.provider == "twilio":
        callback = f"{settings.PUBLIC_BASE_URL}/hooks/twilio/status?ref={m.pk}"
    return Outbound(
        channel=m.channel, to=m.to_address, sender=m.from_address, body=m.body if mode != "template" else "",
        subject=m.subject, html=m.html, content_sid=m.content_sid if mode == "template" else "",
        content_variables=m.content_variables if mode == "template" else {}, status_callback=callback,
        messaging_service_sid=m.account.messaging_service_sid if m.account else "", reference=str(m.pk),
        attachments=_attachments(m),
    )


def _attachments(m: Message) -> list:
    from messaging.hooks import email_attachments

    return email_attachments(m) if m.channel == "email" else []


def _mode(m: Message, provider, now) -> str | None:
    """text, template, or None when WhatsApp free text is not allowed and there is no template."""
    if not provider.session_window_hours:
        return "text"
    window = m.conversation.whatsapp_window_ends_at
    if window is not None and window > now:
        return "text"
    return "template" if m.content_sid else None


def _attach_related(msgs: list[Message]) -> None:
    """Load what delivery reads besides the message and its patient, each row once per batch.

    A batch shares a few accounts and sites (select_related built one object per message for
    them), and only WhatsApp messages read their conversation (the 24-hour window).
    """
    from clinics.models import Site
    from messaging.models import Conversation

    accounts = ChannelAccount.objects.in_bulk({m.account_id for m in msgs if m.account_id})
    sites = Site.objects.in_bulk({m.patient.home_site_id for m in msgs if m.patient})
    windowed = {m.conversation_id for m in msgs if m.channel == Channel.WHATSAPP}
    conversations = Conversation.objects.in_bulk(windowed) if windowed else {}
    for m in msgs:
        if m.account_id:
            m.account = accounts[m.account_id]
        if m.patient:
            m.patient.home_site = sites[m.patient.home_site_id]
        if m.conversation_id in conversations:
            m.conversation = conversations[m.conversation_id]


def deliver(ids: list[int]) -> None:
    now = timezone.now()
    msgs = list(Message.objects.filter(id__in=ids, status=MessageStatus.SENDING).select_related("patient"))
    _attach_related(msgs)
    checks = [(m.patient, m.channel, m.purpose) for m in msgs if m.patient and not m.compliance]
    decisions = iter(may_contact_many(checks, at=now)) if checks else iter(())
    ready: list[tuple[Message, object, str]] = []
    providers: dict[int, object] = {}  # one provider (one HTTP session) per account for the batch
    for m in msgs:
        if m.patient and not m.compliance:
            decision = next(decisions)
            if not decision:
                # Consent changed since the message was queued (e.g. STOP): never send it here.
                _fallback(m, reason=f"consent_{decision.reason}", now=now)
                continue
            if not m.urgent and m.patient.in_quiet_hours(now):
                Message.objects.filter(pk=m.pk, status=MessageStatus.SENDING, attempt_count=m.attempt_count).update(
                    status=MessageStatus.QUEUED, next_attempt_at=quiet_hours_end(m.patient, now), claimed_until=None,
                    attempt_count=F("attempt_count") - 1,
                )
                continue
        try:
            provider = providers.get(m.account_id) or providers.setdefault(m.account_id, provider_for(m.account))
        except Exception as exc:  # misconfigured account: fail loudly, keep the message
            log.exception("provider for message %s", m.pk)
            _record_failure(m, None, TransportError(str(exc), permanent=False, code="config"), now)
            continue
        mode = _mode(m, provider, now)
        if mode is None:
            _fallback(m, reason="outside_session_window", now=now)
            continue
        ready.append((m, provider, mode))
    if not ready:
        return
    groups: dict[int, list[tuple[Message, object, str]]] = defaultdict(list)
    for item in ready:
        groups[item[0].account_id].append(item)
    for number, items in enumerate(groups.values()):
        provider = items[0][1]
        # Earlier groups took time: keep only rows still ours and extend their lease for this one.
        items = _renew(items, timeout=provider.request_timeout, parallel=provider.can_lookup)
        if number:  # and a STOP may have arrived meanwhile
            items = _still_allowed(items)
        if not items:
            continue
        if provider.kind == "sandbox":
            # The sandbox writes to our own database: its 'send' and our record commit together.
            attempts = _start(items)
            with transaction.atomic():
                _record(items, provider.send_many([outbound_for(m, mode) for m, _p, mode in items]), attempts)
            continue
        if provider.can_lookup:
            # 'started' rows committed before the calls; if we die, reconcile asks the provider.
            attempts = _start(items)
            results = provider.send_many([outbound_for(m, mode) for m, _p, mode in items])
            with transaction.atomic():
                _record(items, results, attempts)
        else:
            # A provider that cannot be asked afterwards (SMTP): one message at a time, so a crash
            # leaves at most one outcome unknown and the rest are simply sent later.
            for item in items:
                # Each send may take longer than its share of the group's lease: renew it alone.
                if not _renew([item], timeout=provider.request_timeout, parallel=False):
                    continue
                attempts = _start([item])
                result = provider.send_many([outbound_for(item[0], item[2])])
                with transaction.atomic():
                    _record([item], result, attempts)


def _start(items) -> dict[int, MessageAttempt]:
    now = timezone.now()
    attempts = {
        m.pk: MessageAttempt(message=m, number=m.attempt_count, channel=m.channel, provider=m.provider, mode=mode,
                             started_at=now, outcome=AttemptOutcome.STARTED)
        for m, _p, mode in items
    }
    MessageAttempt.objects.bulk_create(attempts.values())
    return attempts


def _renew(items, *, timeout: float, parallel: bool):
    """The items whose rows this worker still owns, with the lease extended to cover this group's
    sends; rows reconcile took back are left alone.

    Owned means: still `sending`, lease not run out, and still this worker's claim: the same claim
    number and the very lease this worker set. Every claim counts up `attempt_count`, so a row the
    relay re-queued and another worker claimed again has a higher number; and the relay, taking a
    stuck row over, first moves its lease, so a row the relay is reconciling is not ours either.
    """
    now = timezone.now()
    claims = {m.pk: (m.attempt_count, m.claimed_until) for m, _p, _mode in items}
    until = now + dt.timedelta(seconds=lease_seconds(len(claims), timeout=timeout, parallel=parallel))
    with transaction.atomic():
        owned = {
            pk for pk, number, lease in Message.objects.select_for_update()
            .filter(id__in=list(claims), status=MessageStatus.SENDING, claimed_until__gt=now)
            .values_list("id", "attempt_count", "claimed_until")
            if claims[pk] == (number, lease)
        }
        Message.objects.filter(id__in=owned).update(claimed_until=until)
    kept = [item for item in items if item[0].pk in owned]
    for m, _p, _mode in kept:
        m.claimed_until = until
    return kept


def _still_allowed(items):
    """The items consent still allows now; the others go to their next channel (or fail)."""
    now = timezone.now()
    checked = [item for item in items if item[0].patient and not item[0].compliance]
    if not checked:
        return items
    decisions = may_contact_many([(m.patient, m.channel, m.purpose) for m, _p, _mode in checked], at=now)
    refused = set()
    for (m, _p, _mode), decision in zip(checked, decisions, strict=True):
        if not decision:
            _fallback(m, reason=f"consent_{decision.reason}", now=now)
            refused.add(m.pk)
    return [item for item in items if item[0].pk not in refused]


def _record(items, results, attempts) -> None:
    now = timezone.now()
    accepted_msgs, accepted_attempts = [], []
    for (m, _provider, _mode), result in zip(items, results, strict=True):
        attempt = attempts[m.pk]
        attempt.finished_at = now
        if isinstance(result, SendResult):
            attempt.outcome, attempt.provider_id = AttemptOutcome.ACCEPTED, result.provider_id
            m.status, m.provider_id, m.sent_at = accepted_status(result.status), result.provider_id, now
            m.claimed_until, m.error_code, m.error_message = None, "", ""
            if result.status == MessageStatus.DELIVERED:
                m.delivered_at = now
            accepted_msgs.append(m)
            accepted_attempts.append(attempt)
        else:
            _record_failure(m, attempt, result, now)
    if accepted_msgs:
        _mark_accepted(accepted_msgs, accepted_attempts, now)


def _mark_accepted(msgs: list[Message], attempts: list[MessageAttempt], now) -> None:
    """Record a batch the provider accepted: one UPDATE per table, whatever the batch size.

    Only rows still `sending` change (status, provider id, …): a receipt that beat us here has
    already stored the provider id while moving the row forward, and a row a failure receipt sent
    to its next channel must not take this send's id back. One statement per
    table instead of bulk_update: its CASE WHEN per row cost more Python time than the rest of the
    batch, and every extra UPDATE of a message row writes all its index entries again.
    """
    at = connection.ops.adapt_datetimefield_value(now)
    # Only rows of this claim (its number, see `_renew`): a row claimed again since is not ours to
    # set. Still ours means `sending`, or `unknown` if the relay, unable to ask an SMTP server,
    # gave up waiting for this worker: the worker knows better, the message was accepted.
    ours = "{t}.status IN (%s, %s)"
    mine = [MessageStatus.SENDING, MessageStatus.UNKNOWN]
    _update_from_values(
        Message, [(m.pk, m.provider_id, m.status, m.attempt_count) for m in msgs],
        f"provider_id = CASE WHEN {ours} THEN v.column2 ELSE {{t}}.provider_id END, "
        f"sent_at = CASE WHEN {ours} THEN %s ELSE {{t}}.sent_at END, "
        f"delivered_at = CASE WHEN {ours} AND v.column3 = %s THEN %s ELSE {{t}}.delivered_at END, "
        f"claimed_until = CASE WHEN {ours} THEN NULL ELSE {{t}}.claimed_until END, "
        f"error_code = CASE WHEN {ours} THEN '' ELSE {{t}}.error_code END, "
        f"error_message = CASE WHEN {ours} THEN '' ELSE {{t}}.error_message END, "
        f"status = CASE WHEN {ours} THEN v.column3 ELSE {{t}}.status END",  # every WHEN reads the row as it was
        [*mine, *mine, at, *mine, MessageStatus.DELIVERED, at, *mine, *mine, *mine, *mine],
        where="{t}.attempt_count = v.column4",
    )
    _update_from_values(
        MessageAttempt, [(a.pk, a.provider_id) for a in attempts],
        "provider_id = v.column2, outcome = %s, finished_at = %s", [AttemptOutcome.ACCEPTED, at],
    )


def _update_from_values(model, rows: list[tuple], assignments: str, params: list, *, where: str = "",
                        chunk: int = 500) -> None:
    """`UPDATE <table> SET <assignments> FROM (VALUES <rows>) AS v WHERE <table>.<pk> = v.column1`
    (`AND <where>` when given).

    Each row is (pk, value2, value3, …), read as v.column2, v.column3, … in `assignments`, where {t}
    stands for the quoted table name. Works on PostgreSQL and on SQLite (3.33+), our two databases.
    """
    qn = connection.ops.quote_name
    table, pk = qn(model._meta.db_table), qn(model._meta.pk.column)
    width = len(rows[0]) if rows else 0
    placeholder = "(" + ", ".join(["%s"] * width) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            cursor.execute(
                f"UPDATE {table} SET {assignments.format(t=table)} "  # noqa: S608  names and SQL are ours
                f"FROM (VALUES {', '.join([placeholder] * len(part))}) AS v WHERE {table}.{pk} = v.column1"
                + (f" AND {where.format(t=table)}" if where else ""),
                [*params, *(value for row in part for value in row)],
            )


def accepted_status(provider_status: str) -> str:
    """Our status for a message the provider holds: at least `sent`.

    Twilio answers a create with its own status `queued` (accepted, not yet handed to a carrier);
    storing that as our `queued` would make the row due again and send it a second time.
    """
    if STATUS_RANK.get(provider_status, 0) < STATUS_RANK[MessageStatus.SENT]:
        return MessageStatus.SENT
    return provider_status


def _backoff(attempt: int, retry_after: float | None) -> float:
    base = settings.SEND_RETRY_BASE_SECONDS * (2 ** max(0, attempt - 1))
    delay = random.uniform(base / 2, base)  # noqa: S311  jitter, not cryptography
    return max(delay, retry_after or 0)


def _tries_on_channel(m: Message) -> int:
    """Claims spent on the message's current channel: a fallback channel gets its own retries and
    backoff (attempt_count counts the claims on every channel tried)."""
    elsewhere = MessageAttempt.objects.filter(message=m).exclude(channel=m.channel).count()
    return max(1, m.attempt_count - elsewhere)


def _record_failure(m: Message, attempt: MessageAttempt | None, err: TransportError, now) -> None:
    if attempt is not None:
        attempt.finished_at = now
        attempt.error_code, attempt.error_message = err.code[:40], err.message[:500]
        attempt.outcome = (
            AttemptOutcome.UNKNOWN if err.unknown else AttemptOutcome.FAILED if err.permanent else AttemptOutcome.RETRY
        )
        attempt.save(update_fields=["finished_at", "error_code", "error_message", "outcome"])
    base = Message.objects.filter(pk=m.pk, status=MessageStatus.SENDING, attempt_count=m.attempt_count)
    if err.unknown:
        base.update(status=MessageStatus.UNKNOWN, error_code=err.code[:40], error_message=err.message[:500],
                    claimed_until=now + dt.timedelta(seconds=settings.RECONCILE_AFTER_SECONDS))
        return
    if not err.permanent:
        tries = _tries_on_channel(m)
        if tries >= settings.SEND_MAX_ATTEMPTS:
            _fallback(m, reason=f"gave_up_{err.code}", now=now, error=err, claim=m.attempt_count)
            return
        base.update(status=MessageStatus.QUEUED, error_code=err.code[:40], error_message=err.message[:500],
                    claimed_until=None,
                    next_attempt_at=now + dt.timedelta(seconds=_backoff(tries, err.retry_after)))
        return
    apply_consequences(m, err.code)
    if err.code == "63016" and m.content_sid and attempt is not None and attempt.mode == "text":
        # The window closed under us: send the approved template on the same channel now.
        from messaging.models import Conversation

        Conversation.objects.filter(pk=m.conversation_id).update(whatsapp_window_ends_at=now)
        base.update(status=MessageStatus.QUEUED, next_attempt_at=now, claimed_until=None, error_code=err.code)
        transaction.on_commit(kick)
        return
    _fallback(m, reason=err.code or "refused", now=now, error=err, claim=m.attempt_count)


def _fallback(m: Message, *, reason: str, now, error: TransportError | None = None,
              statuses: tuple[str, ...] = (MessageStatus.SENDING, MessageStatus.QUEUED),
              claim: int | None = None) -> None:
    """Try the next allowed channel; fail the message (keeping why) when none is left.
    `claim`: the claim number of the send that failed; the row moves only if it is still that claim."""
    tried = set(MessageAttempt.objects.filter(message=m).values_list("channel", flat=True)) | {m.channel}
    routing = [*m.routing, {"channel": m.channel, "failed": reason}]
    chosen = None
    if m.patient is not None and not m.compliance:
        patient = m.patient
        channels = [c for c in candidate_channels(patient, None) if c not in tried]
        decisions = dict(zip(channels, may_contact_many([(patient, c, m.purpose) for c in channels], at=now),
                             strict=True))
        lookups = Lookups.load([patient], {m.template})
        try:
            chosen, skipped = route(
                patient=patient, purpose=m.purpose, template_name=m.template, context=m.context, channels=channels,
                decisions=decisions, lookups=lookups,
                window_open=bool(m.conversation.whatsapp_window_ends_at and m.conversation.whatsapp_window_ends_at > now),
            )
            routing.extend(skipped)
        except Exception:  # a template that no longer renders: fail with the reason below
            log.exception("fallback routing for message %s", m.pk)
    base = Message.objects.filter(pk=m.pk, status__in=list(statuses))
    if claim is not None:
        base = base.filter(attempt_count=claim)
    if chosen is None:
        base.update(status=MessageStatus.FAILED, failed_at=now, claimed_until=None, routing=routing,
                    error_code=(error.code if error else reason)[:40],
                    error_message=(error.message if error else reason)[:500])
        return
    from messaging.services import apply_route

    m.routing = routing
    apply_route(m, chosen)
    send_at = now if m.urgent else quiet_hours_end(m.patient, now)
    base.update(
        status=MessageStatus.QUEUED, next_attempt_at=send_at, claimed_until=None, channel=m.channel,
        to_address=m.to_address, account=m.account, from_address=m.from_address, provider=m.provider,
        provider_id=None,  # the earlier channel's id stays on its attempt; late receipts for it are ignored
        language=m.language, subject=m.subject, body=m.body, content_sid=m.content_sid,
        content_variables=m.content_variables, routing=m.routing, error_code=(error.code if error else reason)[:40],
    )
    transaction.on_commit(kick)


def reconcile(limit: int = 200) -> int:
    """Settle messages whose worker vanished (lease over) or whose outcome was unknown.

    Asks the provider whether the message exists; found -> accepted, absent -> queued again.
    Never resends without asking.
    """
    now = timezone.now()
    stuck = list(
        Message.objects.filter(status__in=[MessageStatus.SENDING, MessageStatus.UNKNOWN], claimed_until__lt=now)
        .select_related("account", "conversation")
        .order_by("pk")[:limit]  # oldest first: with the provider's oldest-first match, lost sends to one number pair up in order
    )
    done = 0
    for m in stuck:
        relock = now + dt.timedelta(seconds=settings.RECONCILE_AFTER_SECONDS)
        if not Message.objects.filter(pk=m.pk, status=m.status, claimed_until=m.claimed_until).update(claimed_until=relock):
            continue  # another relay took it
        ours = Message.objects.filter(pk=m.pk, status=m.status, claimed_until=relock)  # unless a worker moved it since
        attempt = MessageAttempt.objects.filter(message=m, number=m.attempt_count).first()
        if attempt is None:
            # Claimed but the worker died before calling anyone: nothing went out.
            ours.update(
                status=MessageStatus.QUEUED, next_attempt_at=now, claimed_until=None)
            done += 1
            continue
        try:
            provider = provider_for(m.account)
        except Exception:  # a misconfigured account must not stop the relay for everyone else
            log.exception("reconcile message %s: no provider", m.pk)
            continue
        if not provider.can_lookup:
            ours.update(
                status=MessageStatus.UNKNOWN, claimed_until=None)
            continue
        # Sids our other messages to this address hold, or any other attempt held (this message's
        # earlier ones included, e.g. the free text a template resend replaced), are never this attempt's.
        taken = frozenset(
            MessageAttempt.objects.filter(message__provider=m.provider, message__to_address=m.to_address,
                                          started_at__gte=attempt.started_at - dt.timedelta(days=1))
            .exclude(pk=attempt.pk).exclude(provider_id="").values_list("provider_id", flat=True)
        ) | frozenset(
            Message.objects.filter(provider=m.provider, to_address=m.to_address, provider_id__isnull=False,
                                   created_at__gte=attempt.started_at - dt.timedelta(days=1))
            .exclude(pk=m.pk).values_list("provider_id", flat=True)
        )
        try:
            found = provider.lookup(outbound_for(m, attempt.mode or "text"), since=attempt.started_at, exclude=taken)
        except TransportError as exc:
            log.warning("reconcile message %s: %s", m.pk, exc)
            continue
        with transaction.atomic():
            if found is not None:
                ours.update(
                    status=accepted_status(found.status), provider_id=found.provider_id, sent_at=attempt.started_at,
                    claimed_until=None, error_code="", error_message="")
                MessageAttempt.objects.filter(pk=attempt.pk).update(
                    outcome=AttemptOutcome.FOUND, provider_id=found.provider_id, finished_at=now)
                if found.status in (MessageStatus.FAILED, MessageStatus.UNDELIVERED):
                    # It went out and has failed since: as if its status callback had said so.
                    _reported_failure(m, provider_id=found.provider_id, error_code=found.error_code)
            else:
                ours.update(
                    status=MessageStatus.QUEUED, next_attempt_at=now, claimed_until=None)
                MessageAttempt.objects.filter(pk=attempt.pk).update(outcome=AttemptOutcome.NOT_FOUND, finished_at=now)
        done += 1
    if done:
        transaction.on_commit(kick)
    return done


def _reported_failure(m: Message, *, provider_id: str, error_code: str) -> None:
    """The provider holds the message as failed/undelivered: the template instead of WhatsApp free
    text after 63016, else the code's consequences and the next allowed channel."""
    m.refresh_from_db()
    if m.provider_id != provider_id:
        return
    if error_code == "63016" and resend_as_template(m, provider_id=provider_id):
        return
    if error_code:
        apply_consequences(m, error_code)
    fallback_after_delivery_failure(m, error_code=error_code)


def resend_as_template(m: Message, *, provider_id: str) -> bool:
    """Twilio reported 63016 for WhatsApp free text it had accepted (`provider_id`): the window was
    closed after all. Queue the approved template on the same channel instead. Returns whether it did.

    Only the latest attempt counts, so a late or repeated callback never causes a second resend.
    """
    from messaging.models import Conversation

    last = MessageAttempt.objects.filter(message=m).order_by("-number").first()
    if (m.channel != "whatsapp" or not m.content_sid or last is None or last.mode != "text"
            or last.provider_id != provider_id):
        return False
    now = timezone.now()
    with transaction.atomic():
        moved = Message.objects.filter(pk=m.pk, provider_id=provider_id).exclude(
            status__in=[MessageStatus.QUEUED, MessageStatus.SENDING]
        ).update(status=MessageStatus.QUEUED, next_attempt_at=now, claimed_until=None, provider_id=None,
                 sent_at=None, delivered_at=None, read_at=None, failed_at=None, error_code="63016",
                 error_message="outside the WhatsApp window: resending the approved template")
        if not moved:
            return False
        MessageAttempt.objects.filter(pk=last.pk).update(outcome=AttemptOutcome.FAILED, error_code="63016",
                                                         error_message="reported by status callback")
        Conversation.objects.filter(pk=m.conversation_id, whatsapp_window_ends_at__gt=now).update(
            whatsapp_window_ends_at=now)
    transaction.on_commit(kick)
    return True


def fallback_after_delivery_failure(m: Message, *, error_code: str) -> None:
    """The provider accepted the message but later reported it failed/undelivered: like a refusal
    at send time, try the next allowed channel (the failed one stays in the attempts)."""
    if m.direction != "out" or m.compliance:
        return
    now = timezone.now()
    err = TransportError(f"reported {error_code or 'failed'} after acceptance", permanent=True, code=error_code)
    if m.provider_id:
        MessageAttempt.objects.filter(message=m, provider_id=m.provider_id).update(
            outcome=AttemptOutcome.FAILED, error_code=(error_code or "")[:40], error_message=err.message[:500])
    _fallback(m, reason=error_code or "undelivered", now=now, error=err,
              statuses=(MessageStatus.FAILED, MessageStatus.UNDELIVERED))
