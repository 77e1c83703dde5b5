"""Local stand-ins for the outside world, so no test touches the network.

- `tests.fakes.twilio_server`: a fake of Twilio's Messages API (also runnable as its own process:
  `python -m tests.fakes.twilio_server --port 8765`), plus webhook signing and payload helpers;
- `tests.fakes.smtp_server`: a real SMTP server (aiosmtpd) keeping every mail;
- `tests.fakes.receiver`: a tiny HTTP server recording webhooks posted to it;
- `tests.fakes.plugin`: the pytest fixtures (fake_twilio, fake_twilio_settings, webhook_receiver,
  smtp_server, smtp_email_settings), registered from tests/conftest.py.

Kept import-free so `python -m tests.fakes.twilio_server` does not import the module twice.
"""
