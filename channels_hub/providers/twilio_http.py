"""Build the official `twilio.rest.Client`, optionally talking to another host than api.twilio.com.

The twilio library hard-codes its product hosts (`https://api.twilio.com` for the Messages API, and
`https://<product>.twilio.com` for the others); its `edge`/`region` options can only insert
`.<edge>.<region>` into those Twilio host names, never point at an arbitrary URL. So the one seam is
the HTTP client: `RebasedTwilioHttpClient` is a `TwilioHttpClient` that swaps the scheme and host of
every `*.twilio.com` URL for `base_url` just before the request goes out. Tests point it at the local
fake (tests/fakes/twilio_server.py); production leaves TWILIO_API_BASE_URL at https://api.twilio.com
and gets the stock client.

`timeout` is handed to `requests` as both the connect and the read timeout, so a fake that answers
late makes the call raise `requests.exceptions.ReadTimeout` (the request may still have been
processed: callers must treat that outcome as unknown). No retries are configured: Twilio has no
idempotency key on message create, so a transparent retry could send a message twice.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from requests.adapters import HTTPAdapter
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

TWILIO_API_ORIGIN = "https://api.twilio.com"


class RebasedTwilioHttpClient(TwilioHttpClient):
    """A TwilioHttpClient that sends every request for a `*.twilio.com` host to `base_url` instead.

    A path in `base_url` is kept as a prefix: base_url "http://127.0.0.1:8765/twilio" turns
    https://api.twilio.com/2010-04-01/... into http://127.0.0.1:8765/twilio/2010-04-01/...
    """

    def __init__(self, *, base_url: str, timeout: float | None = None):
        super().__init__(timeout=timeout)
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._scheme, self._netloc, self._prefix = parts.scheme, parts.netloc, parts.path.rstrip("/")
        # The stock client only tunes its https:// pool; a local fake is usually plain http.
        self.session.mount("http://", HTTPAdapter(pool_maxsize=min(32, (os.cpu_count() or 1) + 4)))
        # The target is addressed directly: proxies or .netrc from the environment do not apply.
        self.session.trust_env = False

    def rebase(self, url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host != "twilio.com" and not host.endswith(".twilio.com"):
            return url
        return urlunsplit((self._scheme, self._netloc, self._prefix + parts.path, parts.query, parts.fragment))

    def request(self, method, url, params=None, data=None, headers=None, auth=None, timeout=None,
                allow_redirects=False):
        return super().request(method, self.rebase(url), params=params, data=data, headers=headers, auth=auth,
                               timeout=timeout, allow_redirects=allow_redirects)


def make_twilio_client(*, account_sid: str, auth_token: str, base_url: str | None = None,
                       timeout: float = 10.0) -> Client:
    """A `twilio.rest.Client` for `account_sid`, talking to `base_url` (default: the real Twilio).

    `timeout` (seconds, > 0) applies to connecting and to waiting for each response.
    """
    if base_url is None or base_url.rstrip("/") == TWILIO_API_ORIGIN:
        http_client = TwilioHttpClient(timeout=timeout)
    else:
        http_client = RebasedTwilioHttpClient(base_url=base_url, timeout=timeout)
    # TWILIO_REGION / TWILIO_EDGE in the environment still select a Twilio region as the library
    # documents; with a base_url those regional *.twilio.com hosts are rebased like any other.
    return Client(username=account_sid, password=auth_token, account_sid=account_sid, http_client=http_client)
