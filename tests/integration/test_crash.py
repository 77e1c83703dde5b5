"""Crash tests: real Celery worker processes, real PostgreSQL and Redis, a fake Twilio in its own process.

5,000 messages are queued the way a reminder sweep queues them (message_send_many in batches), the
workers are crashed part-way (kill -9 of a whole worker, or kill -9 of the Redis server under it),
and afterwards every message must exist exactly once at the provider: counted at the fake per
message reference (the `ref` our StatusCallback URL carries), none missing, none twice.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django.conf import settings
from django.db import connection

from channels_hub.models import ChannelAccount
from messaging.models import Message, MessageAttempt, MessageStatus, MessageTemplate
from tests.fakes.twilio_server import fake_twilio_process
from tests.integration.helpers import (
    Processes,
    Supervisor,
    celery_env,
    creates_per_reference,
    database_url,
    flush_redis,
    free_port,
    queue_messages,
    seed_sms_patients,
    start_beat,
    start_redis,
    start_worker,
    wait_until,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

COUNT = 5000
SETTLED = {MessageStatus.SENT, MessageStatus.DELIVERED}
IN_FLIGHT = [MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.UNKNOWN]


@pytest.fixture
def shared_redis():
    """REDIS_URL's database (one of its own, e.g. redis://127.0.0.1:6379/9), empty before and after."""
    flush_redis(settings.REDIS_URL)
    yield settings.REDIS_URL
    flush_redis(settings.REDIS_URL)


@pytest.fixture
def procs(transactional_db, shared_redis, tmp_path):
    """Processes started by the test; all killed before the test database and Redis are flushed."""
    processes = Processes(tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()


@pytest.fixture
def fake():
    with fake_twilio_process() as control:
        yield control


@pytest.fixture
def queued(site_a):
    """A Twilio SMS channel account, a care template, and 5,000 consenting patients (not yet queued)."""
    ChannelAccount.objects.create(site=site_a, channel="sms", provider="twilio", sender="+390612345678")
    MessageTemplate.objects.create(name="crash-reminder", purpose="care", language="en",
                                   body="Hi {{ first_name }}, your appointment is {{ when }}. Reply C to confirm.")
    return seed_sms_patients(site_a, COUNT)


def _env(fake, redis_url: str) -> dict[str, str]:
    return celery_env(database_url=database_url(connection.settings_dict), redis_url=redis_url,
                      twilio_base_url=fake.base_url, account_sid=fake.account_sid, auth_token=fake.auth_token)


def _wait_settled(ids: list[int], procs: Processes, *, timeout: float) -> None:
    def settled():
        return not Message.objects.filter(pk__in=ids, status__in=IN_FLIGHT).exists()

    try:
        wait_until(settled, timeout=timeout, interval=0.5, what="every message to leave queued/sending/unknown")
    except AssertionError as exc:
        counts = Counter(Message.objects.filter(pk__in=ids).values_list("status", flat=True))
        logs = "\n".join(f"--- {name} ---\n{procs.tail(name, 15)}" for name in procs.procs)
        raise AssertionError(f"{exc}; statuses {dict(counts)}\n{logs}") from None


def _assert_exactly_once(ids: list[int], fake) -> None:
    time.sleep(1)  # anything still on its way to the fake would show up now
    refs = creates_per_reference(fake.messages())
    expected = {str(i) for i in ids}
    missing = expected - set(refs)
    twice = {ref: n for ref, n in refs.items() if n > 1}
    strangers = set(refs) - expected
    assert not twice, f"{len(twice)} messages created more than once at the provider, e.g. {list(twice.items())[:5]}"
    assert not missing, f"{len(missing)} messages never reached the provider, e.g. {sorted(missing)[:5]}"
    assert not strangers, f"the provider holds messages we never queued: {sorted(strangers)[:5]}"
    statuses = Counter(Message.objects.filter(pk__in=ids).values_list("status", flat=True))
    assert set(statuses) <= SETTLED, f"not every message is sent: {dict(statuses)}"
    assert sum(statuses.values()) == COUNT


def test_worker_killed_mid_run_and_restarted_sends_every_message_exactly_once(procs, fake, queued, shared_redis):
    # Given 5,000 messages queued by a sweep, a beat and a worker draining them through Twilio
    env = _env(fake, shared_redis)
    ids = queue_messages(queued, template="crash-reminder", key_prefix="crash-kill")
    assert len(ids) == COUNT
    start_beat(procs, env)
    start_worker(procs, "worker1", env)

    # When the worker is killed with SIGKILL part-way through, and a new one is started
    wait_until(lambda: fake.count() >= COUNT // 4, timeout=90, interval=0.02, what="a quarter to reach the fake")
    procs.kill("worker1")
    at_crash = fake.count()
    assert at_crash < COUNT, "the worker finished before it could be killed: nothing was tested"
    interrupted = Message.objects.filter(pk__in=ids, status=MessageStatus.SENDING).count()
    start_worker(procs, "worker2", env)
    _wait_settled(ids, procs, timeout=120)

    # Then every message went out exactly once and every row says sent
    _assert_exactly_once(ids, fake)
    print(f"\nkilled at {at_crash}/{COUNT} created, {interrupted} claimed by the dead worker; "
          f"attempts found by reconcile: {MessageAttempt.objects.filter(outcome='found').count()}, "
          f"resent after not found: {MessageAttempt.objects.filter(outcome='not_found').count()}")


def test_redis_restarted_mid_run_sends_every_message_exactly_once(procs, fake, queued):
    # Given a private Redis (never the machine's main one) as broker and cache, beat and two workers
    port = 6390 if _port_free(6390) else free_port()
    start_redis(procs, "redis", port)
    redis_url = f"redis://127.0.0.1:{port}/0"
    env = _env(fake, redis_url)
    ids = queue_messages(queued, template="crash-reminder", key_prefix="crash-redis")
    assert len(ids) == COUNT
    start_beat(procs, env)
    start_worker(procs, "worker1", env)
    start_worker(procs, "worker2", env)
    starters = {"beat": lambda: start_beat(procs, env), "worker1": lambda: start_worker(procs, "worker1", env),
                "worker2": lambda: start_worker(procs, "worker2", env)}
    with Supervisor(procs, starters) as supervisor:
        # When Redis is killed with SIGKILL part-way through (losing every queued task and cache key)
        # and started again empty a moment later
        wait_until(lambda: fake.count() >= COUNT // 4, timeout=90, interval=0.02, what="a quarter to reach the fake")
        procs.kill("redis")
        at_crash = fake.count()
        assert at_crash < COUNT, "the workers finished before Redis went down: nothing was tested"
        time.sleep(2)
        start_redis(procs, "redis", port)
        _wait_settled(ids, procs, timeout=120)

    # Then every message went out exactly once and every row says sent
    _assert_exactly_once(ids, fake)
    print(f"\nRedis killed at {at_crash}/{COUNT} created; processes restarted by the supervisor: "
          f"{dict(supervisor.restarts) or 'none'}")


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
