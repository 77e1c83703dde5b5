"""A bad configuration value stops the process at start, with a message naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Variables the parent (CI, a developer's shell) may set; each case starts from none of them.
_CLEARED = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SECRET_KEY", "DEBUG", "TOUCHPOINT_TESTING",
            "CONSENT_MODE", "TIME_ZONE", "EMAIL_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")


def _start(**env: str) -> subprocess.CompletedProcess:
    """Start Django in a fresh interpreter with `env` on top of a clean environment."""
    base = {k: v for k, v in os.environ.items() if k not in _CLEARED and not k.startswith("PYTEST")}
    base.update({"DJANGO_SETTINGS_MODULE": "config.settings", "TOUCHPOINT_TESTING": "0"}, **env)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=base, capture_output=True, text=True,
        timeout=60,
    )


def test_valid_configuration_starts():
    result = _start(SECRET_KEY="x" * 50)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CONSENT_MODE": "lax"}, "CONSENT_MODE"),
        ({"TIME_ZONE": "Mars/Base"}, "TIME_ZONE"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"DATABASE_URL": "mysql://user:pw@127.0.0.1:3306/touchpoint"}, "DATABASE_URL"),
        ({"SESSION_COOKIE_AGE": "eight hours"}, "SESSION_COOKIE_AGE"),
        ({"TRUSTED_PROXIES": "10.0.0.0/8,the-proxy"}, "TRUSTED_PROXIES"),
        ({"TWILIO_ACCOUNT_SID": "AC" + "0" * 32}, "TWILIO_AUTH_TOKEN"),
    ],
    ids=["consent-mode", "time-zone", "redis-url", "database-url", "integer", "proxies", "twilio-half-set"],
)
def test_bad_value_fails_at_start_naming_the_variable(env, named):
    # when Django starts with one bad value (everything else valid)
    result = _start(SECRET_KEY="x" * 50, **env)

    # then it stops with ImproperlyConfigured naming that variable
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured"), result.stderr
    assert named in last


def test_missing_secret_key_fails_unless_debug():
    # given no SECRET_KEY and DEBUG off, Django refuses to start
    result = _start(DEBUG="0")
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0
    assert "ImproperlyConfigured" in last and "SECRET_KEY" in last

    # while local development (DEBUG=1) starts with a throwaway key
    assert _start(DEBUG="1").returncode == 0
