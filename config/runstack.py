"""`python -m config.runstack`: web, Celery worker and Celery beat in the foreground, for local use.

The embedded mode (`make run`): Django's development server (serves static files in DEBUG), a worker
and beat over Celery's filesystem broker when REDIS_URL is unset. Each child's output is printed
with its name in front. Ctrl-C or SIGTERM stops all three; if one exits on its own the others are
stopped and this exits non-zero. Not for production: docker-compose.yml runs gunicorn there.

Environment: HOST (default 127.0.0.1) and PORT (default 8000) for the web server; DEBUG defaults to
1 here because this is a development runner.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
STOP_TIMEOUT = 15  # seconds a child gets to finish before it is killed
COLOURS = {"web": "\033[36m", "worker": "\033[33m", "beat": "\033[35m"}


def commands(host: str, port: str) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "web": [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
        "worker": [python, "-m", "celery", "-A", "config", "worker", "-l", "info", "--concurrency", "2"],
        "beat": [python, "-m", "celery", "-A", "config", "beat", "-l", "info",
                 "--schedule", str(BASE_DIR / "var" / "celerybeat-schedule")],
    }


class Stack:
    def __init__(self, cmds: dict[str, list[str]]):
        self.cmds = cmds
        self.children: dict[str, subprocess.Popen] = {}
        self.stopping = threading.Event()
        self.print_lock = threading.Lock()
        self.colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        self.width = max(len(name) for name in cmds)

    def say(self, name: str, line: str) -> None:
        prefix = f"{name:<{self.width}} | "
        if self.colour:
            prefix = f"{COLOURS.get(name, '')}{prefix}\033[0m"
        with self.print_lock:
            sys.stdout.write(prefix + line.rstrip("\n") + "\n")
            sys.stdout.flush()

    def _pump(self, name: str, stream) -> None:
        for line in iter(stream.readline, ""):
            self.say(name, line)
        stream.close()

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": "config.settings"}
        (BASE_DIR / "var").mkdir(exist_ok=True)
        for name, cmd in self.cmds.items():
            # Own session: a terminal Ctrl-C reaches only this runner, which then stops each child
            # in order and waits for it (the worker finishes its current task).
            child = subprocess.Popen(  # noqa: S603  our own fixed commands
                cmd, cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                bufsize=1, errors="replace", start_new_session=True,
            )
            self.children[name] = child
            threading.Thread(target=self._pump, args=(name, child.stdout), daemon=True).start()
            self.say("stack", f"started {name} (pid {child.pid}): {' '.join(cmd[1:])}")

    def request_stop(self, signum, _frame) -> None:
        if not self.stopping.is_set():
            self.say("stack", f"{signal.Signals(signum).name} received, stopping")
        self.stopping.set()

    def watch(self) -> int:
        """Wait until a stop is requested or a child exits; return the exit status for the runner."""
        while not self.stopping.is_set():
            for name, child in self.children.items():
                code = child.poll()
                if code is not None:
                    self.say("stack", f"{name} exited with status {code}; stopping the others")
                    return code or 1
            self.stopping.wait(0.2)
        return 0

    def stop(self) -> None:
        for child in self.children.values():
            # The main process only: Celery's worker then stops its own pool (a warm shutdown).
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, child in self.children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say("stack", f"{name} did not stop in {STOP_TIMEOUT} s; killing it")
                self._kill_group(child)
                child.wait()
            # The worker's pool processes share its process group; make sure none outlives it.
            self._kill_group(child)
            self.say("stack", f"{name} stopped (status {child.returncode})")

    @staticmethod
    def _kill_group(child: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)


def main() -> int:
    os.environ.setdefault("DEBUG", "1")
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    stack = Stack(commands(host, port))
    signal.signal(signal.SIGINT, stack.request_stop)
    signal.signal(signal.SIGTERM, stack.request_stop)
    stack.say("stack", f"Touchpoint on http://{host}:{port}/  (Ctrl-C stops web, worker and beat)")
    try:
        stack.start()
        status = stack.watch()
    finally:
        stack.stop()
    return status


if __name__ == "__main__":
    sys.exit(main())
