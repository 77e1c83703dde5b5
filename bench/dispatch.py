"""Outbound throughput: message_send to provider-accepted, against Celery draining no-op tasks.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/8 \\
        .venv/bin/python bench/dispatch.py
    BENCH_SMOKE=1 …        # 2,000 messages (CI)
    BENCH_MESSAGES=50000 … # any count

Needs PostgreSQL and Redis (the production pair): DATABASE_URL names the server (the bench creates
its own database `touchpoint_bench_dispatch_<pid>`, migrates it and drops it at the end), REDIS_URL
the broker and cache (the run uses a queue and cache prefix of its own, see bench/_common.py).

One site with sandbox channel accounts and N patients consenting to care reminders by SMS. Then:
(a) N messages queued by `message_send_many` in batches of 500 (the way a reminder sweep sends),
    delivered by one real Celery worker with 2 pool processes through the sandbox provider;
    messages/s from the first send to the last provider acceptance. The one-by-one `message_send`
    path is timed the same way on a smaller count, as context.
(b) on the same broker, N no-op Celery tasks (one per message) are enqueued first, then the same
    worker (2 processes) is started; tasks/s from the first task taken to the queue being empty.
    Measured once before and once after (a), because other load on the machine moves both figures.
(c) the ratio of (a) to the mean of (b). The last line is `result: dispatch_vs_celery_noop <ratio> x`.

CPU per message (sender, workers, PostgreSQL backends) is printed too when /proc is there: it moves
less with the machine's load than the rates do.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from celery import shared_task
from celery.signals import worker_ready

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

SMOKE = os.environ.get("BENCH_SMOKE", "") not in ("", "0", "false")
MESSAGES = int(os.environ.get("BENCH_MESSAGES", 2_000 if SMOKE else 20_000))
ONE_BY_ONE = int(os.environ.get("BENCH_ONE_BY_ONE", 200 if SMOKE else 1_000))
SWEEP_BATCH = 500
CONCURRENCY = 2
TIMEOUT = 600


@shared_task(name="bench.noop", ignore_result=True)
def noop() -> None:
    """The yardstick: a task that does nothing, on the same broker and worker settings."""


@worker_ready.connect
def _mark_ready(**_kwargs) -> None:
    flag = os.environ.get("BENCH_READY_FILE")
    if flag:
        Path(flag).write_text(str(time.time()))


def fail(message: str, code: int = 2) -> None:
    print(f"bench/dispatch.py: {message}", file=sys.stderr)
    sys.exit(code)


# --- servers and processes --------------------------------------------------------------------

def _check_servers() -> tuple[dict, str]:
    import environ

    url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not url.startswith(("postgres://", "postgresql://", "pgsql://")) or not redis_url.startswith(
            ("redis://", "rediss://", "unix://")):
        fail("needs PostgreSQL and Redis, the production pair: set DATABASE_URL=postgres://… and "
             "REDIS_URL=redis://… (SQLite or the filesystem broker would measure something else).")
    return environ.Env.db_url_config(url), redis_url


def _admin_connection(cfg: dict):
    import psycopg

    return psycopg.connect(dbname="postgres", user=cfg.get("USER") or None, password=cfg.get("PASSWORD") or None,
                           host=cfg.get("HOST") or None, port=cfg.get("PORT") or None, autocommit=True)


def _database_url(cfg: dict, name: str) -> str:
    from urllib.parse import quote

    user, password = quote(cfg.get("USER") or "", safe=""), quote(cfg.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{auth}{cfg.get('HOST') or '127.0.0.1'}:{cfg.get('PORT') or 5432}/{name}"


def _cpu_of(match) -> float | None:
    """CPU seconds used so far by the processes `match(pid, stat_fields, cmdline)` selects (Linux only)."""
    if not Path("/proc/self/stat").exists():
        return None
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().decode(errors="replace")
            if match(int(stat.parent.name), fields, cmdline):
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _database_cpu(name: str) -> float | None:
    """CPU used by the PostgreSQL backends serving database `name` (when PostgreSQL runs on this machine)."""
    return _cpu_of(lambda _pid, _fields, cmdline: cmdline.startswith("postgres:") and f" {name} " in cmdline)


class Worker:
    """`celery -A config worker` with 2 pool processes, as its own process group."""

    def __init__(self, env: dict[str, str], logdir: Path):
        self.env, self.logdir, self.proc, self.runs = env, logdir, None, 0

    def start(self) -> float:
        self.runs += 1
        ready = self.logdir / f"ready-{self.runs}"
        log = open(self.logdir / f"worker-{self.runs}.log", "wb")  # noqa: SIM115  closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "WARNING",
             "--concurrency", str(CONCURRENCY), "--hostname", f"bench{os.getpid()}-{self.runs}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=BASE_DIR, env={**self.env, "BENCH_READY_FILE": str(ready)}, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.log = log
        deadline = time.monotonic() + 60
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                fail(f"the Celery worker did not start:\n{self.tail()}")
            time.sleep(0.02)
        return float(ready.read_text())

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by the worker's processes (its process group)."""
        if self.proc is None:
            return None
        return _cpu_of(lambda _pid, fields, _cmdline: int(fields[2]) == self.proc.pid)

    def tail(self, lines: int = 30) -> str:
        path = self.logdir / f"worker-{self.runs}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # pool children, if any outlived the main process
        self.log.close()
        self.proc = None


# --- data ---------------------------------------------------------------------------------------

def _setup(count: int):
    import datetime as dt

    from channels_hub.models import ChannelAccount
    from clinics.models import Organization, Site
    from consent.models import ConsentAction, ConsentEvent, ConsentSource, Purpose
    from messaging.models import MessageTemplate
    from patients.models import ContactPoint, Patient

    org = Organization.objects.create(name="Bench clinic", slug="bench")
    site = Site.objects.create(organization=org, name="Bench site", slug="bench", time_zone="Europe/Rome",
                               language="en", phone_region="IT")
    for channel, sender in (("sms", "+390612345678"), ("whatsapp", "+390612345678"), ("email", "bench@example.org")):
        ChannelAccount.objects.create(site=site, channel=channel, provider="sandbox", sender=sender)
    MessageTemplate.objects.create(
        name="bench-reminder", purpose="care", language="en",
        body="Hi {{ first_name }}, your appointment is {{ when }} at {{ site_name }}. Reply C to confirm.")
    # No quiet hours, so the figures do not depend on the time of day the bench runs at.
    patients = Patient.objects.bulk_create([
        Patient(organization=org, home_site=site, given_name=f"Name{i}", family_name="Bench", language="en",
                preferred_channels=["sms", "email"], quiet_hours_start=dt.time(0), quiet_hours_end=dt.time(0),
                search_name=f"name{i} bench")
        for i in range(count)
    ], batch_size=2000)
    ContactPoint.objects.bulk_create([
        ContactPoint(patient=p, kind="phone", value=f"+39347{i:07d}", phone_type="mobile", is_primary=True)
        for i, p in enumerate(patients)
    ], batch_size=2000)
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ConsentEvent.objects.bulk_create([
        ConsentEvent(patient=p, channel="sms", purpose=Purpose.CARE, action=ConsentAction.GRANT,
                     source=ConsentSource.STAFF, at=at)
        for p in patients
    ], batch_size=2000)
    return [p.pk for p in patients]


def _context(i: int) -> dict:
    return {"first_name": f"Name{i}", "when": "Monday 3 March, 10:00", "site_name": "Bench site"}


def _wait_accepted(prefix: str, count: int) -> float:
    """Wait until `count` messages keyed `prefix…` are provider-accepted; the time of the last acceptance."""
    from django.db.models import Max

    from messaging.models import Message, MessageStatus

    accepted = [MessageStatus.SENT, MessageStatus.DELIVERED]
    deadline = time.monotonic() + TIMEOUT
    while True:
        rows = Message.objects.filter(idempotency_key__startswith=prefix)
        done = rows.filter(status__in=accepted).count()
        if done >= count:
            return rows.aggregate(last=Max("sent_at"))["last"].timestamp()
        if time.monotonic() > deadline:
            stuck = Counter(rows.exclude(status__in=accepted).values_list("status", flat=True))
            fail(f"only {done}/{count} accepted after {TIMEOUT}s (others: {dict(stuck)})", code=1)
        time.sleep(0.05)


def _sweep(patient_ids: list[int], prefix: str) -> float:
    """Queue one message per patient the way a reminder sweep does; returns the start time."""
    from django.db import transaction

    from messaging.services import SendRequest, message_send_many
    from patients.models import Patient

    started = time.time()
    for start in range(0, len(patient_ids), SWEEP_BATCH):
        chunk = patient_ids[start:start + SWEEP_BATCH]
        with transaction.atomic():
            patients = Patient.objects.filter(pk__in=chunk).order_by("pk")
            message_send_many([
                SendRequest(patient=p, purpose="care", template="bench-reminder", context=_context(p.pk),
                            idempotency_key=f"{prefix}{p.pk}")
                for p in patients
            ])
    return started


def _one_by_one(patient_ids: list[int], prefix: str) -> float:
    from messaging.services import message_send
    from patients.models import Patient

    patients = list(Patient.objects.filter(pk__in=patient_ids).order_by("pk"))
    started = time.time()
    for p in patients:
        message_send(patient=p, purpose="care", template="bench-reminder", context=_context(p.pk),
                     idempotency_key=f"{prefix}{p.pk}")
    return started


def _drain_noop(worker: Worker, count: int, redis_url: str, queue: str) -> float:
    """Enqueue `count` no-op tasks with no worker running, start the worker, time the drain."""
    import redis
    from celery import current_app

    client = redis.Redis.from_url(redis_url)
    client.delete(queue)  # leftovers of part (a), if any
    with current_app.producer_or_acquire() as producer:
        for _ in range(count):
            current_app.send_task("bench.noop", producer=producer)
    queued = client.llen(queue)
    if queued < count:
        fail(f"only {queued}/{count} no-op tasks reached the queue", code=1)
    worker.start()
    cpu_worker = worker.cpu_seconds()
    started = None
    deadline = time.monotonic() + TIMEOUT
    while True:
        left = client.llen(queue)
        if started is None and left < queued:
            started = time.time()
        # With acks_late a task stays in `unacked` until it has run: empty queue + nothing unacked = done.
        if left == 0 and client.hlen("unacked") == 0:
            finished = time.time()
            break
        if time.monotonic() > deadline:
            fail(f"{left} no-op tasks still queued after {TIMEOUT}s", code=1)
        time.sleep(0.005)
    client.close()
    rate = count / (finished - started)
    cpu = f", CPU per task {(worker.cpu_seconds() - cpu_worker) / count * 1000:.2f} ms" if cpu_worker is not None else ""
    print(f"    no-op drain: {rate:.0f} tasks/s{cpu} (the worker's start included)")
    return rate


def main() -> None:
    cfg, redis_url = _check_servers()
    name = f"touchpoint_bench_dispatch_{os.getpid()}"
    run = f"bench-dispatch-{os.getpid()}"
    url = _database_url(cfg, name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "DJANGO_"))}
    env.update({"DATABASE_URL": url, "REDIS_URL": redis_url, "DJANGO_SETTINGS_MODULE": "bench._common",
                "BENCH_RUN": run, "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "TOUCHPOINT_TESTING": "0",
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1"})
    os.environ.update(env)
    with _admin_connection(cfg) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    worker = None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as tmp:
            import django
            from django.core.management import call_command

            django.setup()
            from django.conf import settings

            call_command("migrate", verbosity=0)
            t = time.perf_counter()
            patient_ids = _setup(MESSAGES)
            print(f"setup: {MESSAGES} patients with SMS consent, sandbox accounts, in {time.perf_counter() - t:.1f} s"
                  f" (batch {settings.DISPATCH_BATCH_SIZE}, {CONCURRENCY} worker processes)")

            worker = Worker(env, Path(tmp))
            # (b), first half: the yardstick, measured before and after (a) because other load on the
            # machine moves both figures; the ratio uses the mean of the two.
            noop_before = _drain_noop(worker, MESSAGES, redis_url, run)
            worker.stop()
            worker.start()
            # (a) the sweep path, then the one-by-one path, through real workers
            cpu_sender, cpu_worker, cpu_db = time.process_time(), worker.cpu_seconds(), _database_cpu(name)
            started = _sweep(patient_ids, "sweep-")
            queued_at, cpu_sender = time.time(), time.process_time() - cpu_sender
            last = _wait_accepted("sweep-", MESSAGES)
            cpu_worker = worker.cpu_seconds() - cpu_worker if cpu_worker is not None else None
            cpu_db = _database_cpu(name) - cpu_db if cpu_db is not None else None
            dispatch_rate = MESSAGES / (last - started)
            print(f"(a) message_send_many x{MESSAGES} (batches of {SWEEP_BATCH}) -> provider accepted: "
                  f"{last - started:.2f} s, {dispatch_rate:.0f} messages/s "
                  f"(queueing alone {MESSAGES / (queued_at - started):.0f} messages/s)")
            if cpu_worker is not None:
                print(f"    CPU per message: sender {cpu_sender / MESSAGES * 1000:.2f} ms, "
                      f"workers {cpu_worker / MESSAGES * 1000:.2f} ms, "
                      f"PostgreSQL {cpu_db / MESSAGES * 1000:.2f} ms (0 if it runs elsewhere)")
            few = patient_ids[:ONE_BY_ONE]
            started = _one_by_one(few, "single-")
            last = _wait_accepted("single-", len(few))
            print(f"    message_send x{len(few)} one by one -> provider accepted: {last - started:.2f} s, "
                  f"{len(few) / (last - started):.0f} messages/s (context)")
            worker.stop()

            # (b), second half
            noop_after = _drain_noop(worker, MESSAGES, redis_url, run)
            worker.stop()
            noop_rate = (noop_before + noop_after) / 2
            print(f"(b) Celery draining {MESSAGES} no-op tasks ({CONCURRENCY} worker processes, same broker): "
                  f"{noop_before:.0f} tasks/s before (a), {noop_after:.0f} after, mean {noop_rate:.0f} tasks/s")
            ratio = dispatch_rate / noop_rate
            print(f"(c) dispatch {dispatch_rate:.0f} messages/s vs no-op {noop_rate:.0f} tasks/s")
            print(f"result: dispatch_vs_celery_noop {ratio:.2f} x")
    finally:
        if worker is not None:
            worker.stop()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        with contextlib.suppress(Exception):
            import redis

            client = redis.Redis.from_url(redis_url)
            client.delete(run, f"_kombu.binding.{run}", f"_kombu.binding_permanent.{run}")
            for key in client.scan_iter(f"{run}:*"):  # the run's cache keys (KEY_PREFIX)
                client.delete(key)
            client.close()
        with _admin_connection(cfg) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
