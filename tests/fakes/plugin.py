"""pytest fixtures for the outside world: a fake Twilio API and a real SMTP server, both on local ports.

Registered from tests/conftest.py (`pytest_plugins = ["tests.fakes.plugin"]`).
"""

from __future__ import annotations

import pytest

from tests.fakes.receiver import WebhookReceiver
from tests.fakes.smtp_server import SmtpSink
from tests.fakes.twilio_server import FakeTwilio


@pytest.fixture
def fake_twilio():
    """A running fake of Twilio's Messages API: `.base_url`, `.account_sid`, `.auth_token`, `.requests`,
    `.messages`, `.count(...)`, `.script(...)`, `.send_status_callback(...)`, `.reset()`, `.client()`."""
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def fake_twilio_settings(settings, fake_twilio):
    """Django settings pointing the Twilio providers at `fake_twilio`; yields the fake."""
    settings.TWILIO_API_BASE_URL = fake_twilio.base_url
    settings.TWILIO_ACCOUNT_SID = fake_twilio.account_sid
    settings.TWILIO_AUTH_TOKEN = fake_twilio.auth_token
    settings.TWILIO_TIMEOUT = 2.0
    return fake_twilio


@pytest.fixture
def webhook_receiver():
    """A local HTTP server recording what is posted to it: `.url(path)`, `.received`, `.wait_for(n)`."""
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on a free port: `.host`, `.port`, `.messages` (envelope + parsed mail)."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def smtp_email_settings(settings, smtp_server):
    """Django's smtp EmailBackend pointed at `smtp_server` (plain SMTP, no TLS, no auth); yields the server."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = smtp_server.host
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    return smtp_server
