"""Real processes for integration tests: Celery workers and beat, a private redis-server, seed data.

Every process is started in its own session (process group), so "kill -9 the worker" takes the
Celery main process and its pool children down together, as a crashed container would, and the
test's clean-up can never leave one behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import redis

ROOT = Path(__file__).resolve().parents[2]

# Short enough that a dead worker's claims are reconciled within seconds, long enough that a
# live worker is never overtaken (the lease also grows with the batch: see dispatch.lease_seconds).
FAST_RECOVERY = {
    "DISPATCH_BATCH_SIZE": "100",
    "DISPATCH_LEASE_SECONDS": "3",
    "RECONCILE_AFTER_SECONDS": "2",
    "RELAY_INTERVAL_SECONDS": "1",
    "TWILIO_TIMEOUT": "3",
    "TWILIO_PARALLEL_REQUESTS": "8",
    "SEND_RETRY_BASE_SECONDS": "1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for the database Django is connected to (the test database under pytest)."""
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or "5432"
    return f"postgres://{auth}{host}:{port}/{quote(settings_dict['NAME'], safe='')}"


def wait_until(predicate: Callable[[], object], *, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Processes:
    """Child processes of one test, each in its own process group, logging to files in `logdir`."""

    def __init__(self, logdir: Path):
        self.logdir = Path(logdir)
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, Path] = {}
        self._log_start: dict[str, int] = {}  # where the current run's output begins in its log

    def start(self, name: str, args: list[str], *, env: dict[str, str] | None = None) -> subprocess.Popen:
        if name in self.procs and self.procs[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        log = self.logdir / f"{name}.log"
        self._log_start[name] = log.stat().st_size if log.exists() else 0
        with open(log, "ab") as out:
            proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[name], self._logs[name] = proc, log
        return proc

    def log(self, name: str) -> str:
        path = self._logs.get(name)
        return path.read_text(errors="replace") if path and path.exists() else ""

    def tail(self, name: str, lines: int = 30) -> str:
        return "\n".join(self.log(name).splitlines()[-lines:])

    def wait_for_log(self, name: str, text: str, *, timeout: float) -> None:
        def seen():
            if self.procs[name].poll() is not None:
                raise AssertionError(f"{name} exited ({self.procs[name].returncode}):\n{self.tail(name)}")
            return text in self.log(name)[self._log_start.get(name, 0):]

        try:
            wait_until(seen, timeout=timeout, interval=0.1, what=f"{name} to log {text!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {name} ---\n{self.tail(name)}") from None

    def kill(self, name: str, sig: int = signal.SIGKILL, *, timeout: float = 10) -> None:
        """Send `sig` to the whole process group of `name` and wait for its leader to exit."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
        # Pool children re-parented elsewhere die with the group; give them a moment to go.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.05)

    def stop_all(self) -> None:
        for proc in list(self.procs.values()):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for name in list(self.procs):
            with contextlib.suppress(Exception):
                self.kill(name, signal.SIGKILL, timeout=5)


class Supervisor(threading.Thread):
    """Starts a process again whenever it exits, as `restart: unless-stopped` does in docker-compose.yml.

    Celery workers may exit on their own when the broker vanishes (kombu can raise an unrecoverable
    AttributeError while restoring unacknowledged messages on a dead connection); production relies on
    the supervisor for that, so the tests do too.
    """

    def __init__(self, procs: Processes, starters: dict[str, Callable[[], None]]):
        super().__init__(name="supervisor", daemon=True)
        self.procs, self.starters = procs, starters
        self.restarts: Counter = Counter()
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(0.5):
            for name, start in self.starters.items():
                if self.procs.procs[name].poll() is not None and not self._stopping.is_set():
                    self.restarts[name] += 1
                    with contextlib.suppress(AssertionError):  # not ready yet: tried again next round
                        start()

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self.join(timeout=90)


def celery_env(*, database_url: str, redis_url: str, twilio_base_url: str, account_sid: str, auth_token: str,
               **overrides: str) -> dict[str, str]:
    """Environment for worker/beat processes: real servers, the fake Twilio, fast recovery knobs."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CELERY_", "PYTEST", "DJANGO_", "TWILIO_")) and k not in ("REDIS_URL", "DATABASE_URL")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "TWILIO_API_BASE_URL": twilio_base_url,
        "TWILIO_ACCOUNT_SID": account_sid,
        "TWILIO_AUTH_TOKEN": auth_token,
        "PUBLIC_BASE_URL": "http://127.0.0.1:9",
        "TOUCHPOINT_TESTING": "0",
        "DEBUG": "0",  # as in production
        "SECRET_KEY": "integration-test-secret-key-not-for-production-0123456789",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        **FAST_RECOVERY,
    })
    env.update(overrides)
    return env


def start_worker(procs: Processes, name: str, env: dict[str, str], *, concurrency: int = 2) -> None:
    procs.start(name, [
        sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
        "--concurrency", str(concurrency), "--hostname", f"{name}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ], env=env)
    procs.wait_for_log(name, " ready.", timeout=60)


def start_beat(procs: Processes, env: dict[str, str]) -> None:
    procs.start("beat", [
        sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
        "--schedule", str(procs.logdir / "beat-schedule"),
    ], env=env)
    procs.wait_for_log("beat", "beat: Starting", timeout=60)


def start_redis(procs: Processes, name: str, port: int) -> None:
    """A private, non-persistent redis-server (never the machine's main one)."""
    procs.start(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no"], env=dict(os.environ))
    client = redis.Redis(port=port, socket_connect_timeout=0.5)

    def ping():
        try:
            return client.ping()
        except redis.ConnectionError:
            if procs.procs[name].poll() is not None:
                raise AssertionError(f"redis-server exited:\n{procs.tail(name)}") from None
            return False

    wait_until(ping, timeout=15, interval=0.1, what=f"redis-server on port {port}")
    client.close()


def flush_redis(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


# --- data ---------------------------------------------------------------------------------------

def seed_sms_patients(site, count: int, *, number_base: int = 3470000000) -> list:
    """`count` patients of `site` with their own mobile number, SMS first, consenting to care on SMS,
    and no quiet hours (so the test does not depend on the time of day). Bulk inserts: this is the
    'given', not the behaviour under test."""
    from consent.models import ConsentAction, ConsentEvent, ConsentSource, Purpose
    from patients.models import ContactPoint, Patient

    now = dt.datetime.now(dt.UTC)
    patients = Patient.objects.bulk_create([
        Patient(organization_id=site.organization_id, home_site=site, given_name=f"P{i}", family_name="Crash",
                language="en", preferred_channels=["sms"], quiet_hours_start=dt.time(0), quiet_hours_end=dt.time(0),
                search_name=f"p{i} crash")
        for i in range(count)
    ], batch_size=1000)
    ContactPoint.objects.bulk_create([
        ContactPoint(patient=p, kind="phone", value=f"+39{number_base + i}", phone_type="mobile", is_primary=True)
        for i, p in enumerate(patients)
    ], batch_size=1000)
    ConsentEvent.objects.bulk_create([
        ConsentEvent(patient=p, channel="sms", purpose=Purpose.CARE, action=ConsentAction.GRANT,
                     source=ConsentSource.STAFF, at=now - dt.timedelta(minutes=1))
        for p in patients
    ], batch_size=1000)
    return patients


def queue_messages(patients: list, *, template: str, key_prefix: str, batch: int = 500) -> list[int]:
    """Queue one message per patient through `message_send_many`, `batch` per transaction (a sweep)."""
    from django.db import transaction

    from messaging.services import SendRequest, message_send_many

    ids: list[int] = []
    for start in range(0, len(patients), batch):
        chunk = patients[start:start + batch]
        with transaction.atomic():
            sent = message_send_many([
                SendRequest(patient=p, purpose="care", template=template, idempotency_key=f"{key_prefix}-{p.pk}",
                            context={"first_name": p.given_name, "when": "Monday 10:00"})
                for p in chunk
            ])
        ids.extend(m.pk for m in sent)
    return ids


def creates_per_reference(messages: list[dict]) -> Counter:
    """How many messages the fake Twilio created for each of our message ids (the `ref` of the
    StatusCallback URL every create carries)."""
    refs: Counter = Counter()
    for m in messages:
        callback = m.get("status_callback") or ""
        ref = parse_qs(urlsplit(callback).query).get("ref", [""])[0]
        refs[ref] += 1
    return refs
