"""The fakes are honest: the real twilio client and Django's smtp backend work against them as against
the real services, and every misbehaviour a test scripts reaches the caller the way Twilio's would."""

import base64
import datetime as dt
import json
import re
from email.utils import parsedate_to_datetime

import pytest
import requests
from django.core.mail import EmailMultiAlternatives
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator

from channels_hub.providers.twilio_http import RebasedTwilioHttpClient, make_twilio_client
from tests.fakes.twilio_server import (
    DEFAULT_ACCOUNT_SID,
    WEBHOOK_FIXTURES,
    build_inbound_message,
    fake_twilio_process,
    load_twilio_fixture,
    segments,
)

PATIENT = "+393331234567"
SENDER = "+15017122661"
SERVICE = "MG" + "5e4f" * 8


def _create_raw(fake, fields, auth=None):
    return requests.post(f"{fake.base_url}/2010-04-01/Accounts/{fake.account_sid}/Messages.json", data=fields,
                         auth=auth or (fake.account_sid, fake.auth_token), timeout=5)


# --- the client helper --------------------------------------------------------------------------

def test_client_without_base_url_talks_to_real_twilio():
    client = make_twilio_client(account_sid=DEFAULT_ACCOUNT_SID, auth_token="x", timeout=3)

    assert type(client.http_client) is TwilioHttpClient
    assert client.http_client.timeout == 3
    assert client.api.base_url == "https://api.twilio.com"


def test_rebased_client_sends_every_twilio_host_to_base_url_and_keeps_a_path_prefix():
    http = RebasedTwilioHttpClient(base_url="http://127.0.0.1:9999/twilio/", timeout=1)

    assert http.rebase("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?To=%2B1") == \
        "http://127.0.0.1:9999/twilio/2010-04-01/Accounts/AC1/Messages.json?To=%2B1"
    assert http.rebase("https://content.dublin.ie1.twilio.com/v1/Content") == "http://127.0.0.1:9999/twilio/v1/Content"
    assert http.rebase("https://example.com/hook") == "https://example.com/hook"


# --- create -------------------------------------------------------------------------------------

def test_create_returns_a_queued_message_and_records_the_form_and_basic_auth(fake_twilio):
    client = fake_twilio.client()

    message = client.messages.create(to=PATIENT, from_=SENDER, body="Reminder [ref-1]",
                                     status_callback="https://touchpoint.example/hooks/twilio/status")

    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert message.status == "queued"
    assert message.to == PATIENT and message.from_ == SENDER and message.body == "Reminder [ref-1]"
    assert message.num_segments == "1" and message.price is None
    assert message.direction == "outbound-api"
    assert message.uri == f"/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages/{message.sid}.json"
    (recorded,) = fake_twilio.requests
    assert recorded.method == "POST" and recorded.status == 201 and recorded.sid == message.sid
    assert recorded.form == {"To": PATIENT, "From": SENDER, "Body": "Reminder [ref-1]",
                             "StatusCallback": "https://touchpoint.example/hooks/twilio/status"}
    assert recorded.auth == (fake_twilio.account_sid, fake_twilio.auth_token)
    expected = base64.b64encode(f"{fake_twilio.account_sid}:{fake_twilio.auth_token}".encode()).decode()
    assert recorded.headers["Authorization"] == f"Basic {expected}"
    assert recorded.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert fake_twilio.count("[ref-1]") == 1
    assert fake_twilio.count(to=PATIENT, body="Reminder [ref-1]") == 1


def test_created_message_has_exactly_the_documented_fields(fake_twilio):
    client = fake_twilio.client()
    spec = fake_twilio.spec

    message = client.messages.create(to=PATIENT, messaging_service_sid=SERVICE, body="Hi")
    payload = fake_twilio.requests[0]
    resource = fake_twilio.message(payload.sid).resource()

    assert set(resource) == set(spec.message_schema["properties"])
    assert resource["status"] in spec.statuses
    assert parsedate_to_datetime(resource["date_created"]).tzinfo is not None
    assert resource["subresource_uris"]["media"].endswith(f"/Messages/{message.sid}/Media.json")
    # Documented: with a Messaging Service and no From, no sender is picked yet and segments are 0.
    assert message.from_ is None and message.num_segments == "0"
    assert message.messaging_service_sid == SERVICE


def test_media_whatsapp_and_long_bodies_get_the_documented_sid_and_segments(fake_twilio):
    client = fake_twilio.client()

    mms = client.messages.create(to=PATIENT, from_=SENDER, media_url=["https://example.com/a.png"])
    whatsapp = client.messages.create(to=f"whatsapp:{PATIENT}", from_="whatsapp:+14155238886", body="x" * 500)
    long_sms = client.messages.create(to=PATIENT, from_=SENDER, body="x" * 161)
    unicode_sms = client.messages.create(to=PATIENT, from_=SENDER, body="Ciao 👋 " * 10)

    assert mms.sid.startswith("MM") and mms.num_media == "1"
    assert fake_twilio.requests[0].form["MediaUrl"] == ["https://example.com/a.png"]
    assert whatsapp.num_segments == "1"
    assert long_sms.num_segments == "2"
    assert unicode_sms.num_segments == str(segments("Ciao 👋 " * 10)) == "2"


# --- rejected requests ---------------------------------------------------------------------------

def test_wrong_credentials_get_401_with_twilio_code_20003(fake_twilio):
    client = make_twilio_client(account_sid=fake_twilio.account_sid, auth_token="wrong",
                                base_url=fake_twilio.base_url, timeout=5)

    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=PATIENT, from_=SENDER, body="Hi")

    assert caught.value.status == 401 and caught.value.code == 20003
    assert fake_twilio.count() == 0


def test_unknown_field_is_refused_with_a_twilio_error_body(fake_twilio):
    response = _create_raw(fake_twilio, {"To": PATIENT, "From": SENDER, "Body": "Hi", "Bodyy": "typo"})

    assert response.status_code == 400
    assert response.json() == {"code": 20001, "message": "Unknown parameter: Bodyy",
                               "more_info": "https://www.twilio.com/docs/errors/20001", "status": 400}
    assert fake_twilio.count() == 0


@pytest.mark.parametrize(("fields", "code"), [
    ({"From": SENDER, "Body": "Hi"}, 21604),  # no To
    ({"To": PATIENT, "Body": "Hi"}, 21603),  # neither From nor MessagingServiceSid
    ({"To": PATIENT, "From": SENDER}, 21602),  # none of Body, MediaUrl, ContentSid
    ({"To": "3331234567", "From": SENDER, "Body": "Hi"}, 21211),  # not E.164
    ({"To": f"whatsapp:{PATIENT}", "From": SENDER, "Body": "Hi"}, 21910),  # channel mismatch
    ({"To": PATIENT, "From": SENDER, "Body": "Hi", "Attempt": "twice"}, 20001),  # wrong type
    ({"To": PATIENT, "From": SENDER, "Body": "Hi", "StatusCallback": "not a url"}, 21609),
    ({"To": PATIENT, "MessagingServiceSid": "MG123", "Body": "Hi"}, 20001),  # pattern
    ({"To": PATIENT, "From": SENDER, "ContentSid": "HX" + "0" * 32, "ContentVariables": "[1]"}, 21656),
    ({"To": PATIENT, "From": SENDER, "Body": "x" * 1601}, 21617),
])
def test_invalid_create_gets_400_and_the_client_raises_with_the_twilio_code(fake_twilio, fields, code):
    client = fake_twilio.client()
    kwargs = {{"From": "from_"}.get(k, re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower()): v for k, v in fields.items()}
    kwargs.setdefault("to", "")

    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(**kwargs)

    assert (caught.value.status, caught.value.code) == (400, code)
    assert fake_twilio.count() == 0
    assert fake_twilio.requests[-1].error_code == code


def test_valid_content_template_send_is_accepted(fake_twilio):
    client = fake_twilio.client()

    message = client.messages.create(to=f"whatsapp:{PATIENT}", from_="whatsapp:+14155238886",
                                      content_sid="HX" + "ab" * 16, content_variables=json.dumps({"1": "12:30"}))

    assert message.status == "queued"
    assert fake_twilio.requests[0].form["ContentVariables"] == '{"1": "12:30"}'


# --- scripted misbehaviour ----------------------------------------------------------------------

def test_scripted_unsubscribed_number_surfaces_as_code_21610_and_others_still_send(fake_twilio):
    fake_twilio.script(PATIENT, code=21610)
    client = fake_twilio.client()

    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=PATIENT, from_=SENDER, body="Hi")
    other = client.messages.create(to="+393339876543", from_=SENDER, body="Hi")

    assert (caught.value.status, caught.value.code) == (400, 21610)
    assert other.status == "queued"
    assert fake_twilio.count(to=PATIENT) == 0


@pytest.mark.parametrize(("code", "status"), [(21211, 400), (21614, 400), (63016, 400), (20429, 429),
                                              (20500, 500), (20503, 503)])
def test_scripted_errors_carry_twilios_status_and_code(fake_twilio, code, status):
    fake_twilio.script(f"whatsapp:{PATIENT}", code=code)

    with pytest.raises(TwilioRestException) as caught:
        fake_twilio.client().messages.create(to=f"whatsapp:{PATIENT}", from_="whatsapp:+14155238886", body="Hi")

    assert (caught.value.status, caught.value.code) == (status, code)


def test_scripted_error_applies_only_the_given_number_of_times(fake_twilio):
    fake_twilio.script(code=20429, times=2)
    client = fake_twilio.client()
    outcomes = []

    for _ in range(3):
        try:
            outcomes.append(client.messages.create(to=PATIENT, from_=SENDER, body="Hi").status)
        except TwilioRestException as exc:
            outcomes.append(exc.code)

    assert outcomes == [20429, 20429, "queued"]
    assert fake_twilio.count() == 1


def test_answer_slower_than_the_client_timeout_raises_but_the_message_exists_and_can_be_found(fake_twilio):
    fake_twilio.script(PATIENT, delay=2.0, times=1)
    client = fake_twilio.client(timeout=0.5)

    with pytest.raises(requests.exceptions.ReadTimeout):
        client.messages.create(to=PATIENT, from_=SENDER, body="Reminder [ref-slow]")

    assert fake_twilio.count("[ref-slow]") == 1
    (created,) = fake_twilio.messages
    assert client.messages(created.sid).fetch().status == "queued"
    # listed by recipient it is found; by DateSent it is not, as at Twilio: not sent yet, no DateSent
    assert [m.sid for m in client.messages.list(to=PATIENT, limit=50)] == [created.sid]
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    assert client.messages.list(to=PATIENT, date_sent_after=since, limit=50) == []


def test_connection_closed_without_answer_after_create_leaves_the_message(fake_twilio):
    fake_twilio.script(drop=True, times=1)
    client = fake_twilio.client()

    with pytest.raises(requests.exceptions.ConnectionError):
        client.messages.create(to=PATIENT, from_=SENDER, body="[ref-drop]")

    assert fake_twilio.count("[ref-drop]") == 1
    assert fake_twilio.requests[-1].status == 0


def test_connection_closed_before_create_leaves_nothing(fake_twilio):
    fake_twilio.script(drop=True, accept=False, times=1)

    with pytest.raises(requests.exceptions.ConnectionError):
        fake_twilio.client().messages.create(to=PATIENT, from_=SENDER, body="[ref-lost]")

    assert fake_twilio.count("[ref-lost]") == 0


# --- fetch, list, update, delete ---------------------------------------------------------------

def test_list_filters_by_recipient_and_pages_newest_first(fake_twilio):
    client = fake_twilio.client()
    sids = [client.messages.create(to=PATIENT, from_=SENDER, body=f"n{i}").sid for i in range(3)]
    client.messages.create(to="+393339876543", from_=SENDER, body="other")

    found = client.messages.list(to=PATIENT, page_size=2)

    assert [m.sid for m in found] == list(reversed(sids))
    assert [r.query.get("Page") for r in fake_twilio.requests if r.method == "GET"] == [None, ["1"]]


def test_cancel_redact_and_delete_follow_the_update_schema(fake_twilio):
    client = fake_twilio.client()
    message = client.messages.create(to=PATIENT, from_=SENDER, body="secret")

    redacted = client.messages(message.sid).update(body="")
    canceled = client.messages(message.sid).update(status="canceled")
    deleted = client.messages(message.sid).delete()

    assert redacted.body == "" and canceled.status == "canceled" and deleted is True
    with pytest.raises(TwilioRestException) as caught:
        client.messages(message.sid).fetch()
    assert (caught.value.status, caught.value.code) == (404, 20404)


# --- callbacks and inbound webhooks --------------------------------------------------------------

def test_status_callbacks_arrive_signed_like_twilios(fake_twilio, webhook_receiver):
    client = fake_twilio.client()
    url = webhook_receiver.url("/hooks/twilio/status?account=7")
    message = client.messages.create(to=PATIENT, messaging_service_sid=SERVICE, body="Hi", status_callback=url)

    fake_twilio.send_status_callback(message.sid, "delivered")
    fake_twilio.send_status_callback(message.sid, "undelivered", error_code=30005)
    delivered, undelivered = webhook_receiver.wait_for(2)

    validator = RequestValidator(fake_twilio.auth_token)
    for hook in (delivered, undelivered):
        assert hook.path == "/hooks/twilio/status?account=7"
        assert validator.validate(url, hook.form, hook.headers["X-Twilio-Signature"])
        assert not validator.validate(url, {**hook.form, "MessageStatus": "read"}, hook.headers["X-Twilio-Signature"])
    assert {k: v for k, v in delivered.form.items() if k != "RawDlrDoneDate"} == {
        "MessageSid": message.sid, "SmsSid": message.sid, "SmsStatus": "delivered", "MessageStatus": "delivered",
        "AccountSid": fake_twilio.account_sid, "From": "+15017122661", "To": PATIENT, "ApiVersion": "2010-04-01",
        "MessagingServiceSid": SERVICE,
    }
    assert undelivered.form["ErrorCode"] == "30005" and "ErrorCode" not in delivered.form
    fetched = client.messages(message.sid).fetch()
    assert fetched.status == "undelivered" and fetched.error_code == 30005
    assert [c.status_code for c in fake_twilio.callbacks] == [200, 200]


def test_inbound_whatsapp_webhook_is_signed_for_its_url():
    url = "https://touchpoint.example/hooks/twilio/inbound"

    params, signature = build_inbound_message(url, "token", from_=f"whatsapp:{PATIENT}", to="whatsapp:+14155238886",
                                              body="Sì", profile_name="Giulia")

    assert RequestValidator("token").validate(url, params, signature)
    assert params["WaId"] == "393331234567" and params["ProfileName"] == "Giulia"
    assert params["MessageSid"] == params["SmsMessageSid"] and params["NumMedia"] == "0"
    assert params["ApiVersion"] == "2010-04-01"


@pytest.mark.parametrize("path", sorted(WEBHOOK_FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_webhook_fixture_files_are_twilio_shaped(path):
    params = load_twilio_fixture(path.stem)

    assert all(isinstance(value, str) for value in params.values())
    assert params["AccountSid"] == DEFAULT_ACCOUNT_SID and params["ApiVersion"] == "2010-04-01"
    assert re.fullmatch(r"(SM|MM)[0-9a-f]{32}", params["MessageSid"]) and params["SmsSid"] == params["MessageSid"]
    if path.stem.startswith("status_"):
        assert params["MessageStatus"] == params["SmsStatus"] == path.stem.removeprefix("status_")
        assert ("ErrorCode" in params) == (params["MessageStatus"] in ("failed", "undelivered"))
    else:
        assert params["SmsStatus"] == "received" and params["Body"]
    if "whatsapp" in path.stem or path.stem == "status_read":
        assert params["From"].startswith("whatsapp:") and params["To"].startswith("whatsapp:")


def test_fixture_sid_override_replaces_every_sid_field():
    params = load_twilio_fixture("inbound_sms", sid="SM" + "9" * 32, Body="Hello")

    assert params["MessageSid"] == params["SmsSid"] == params["SmsMessageSid"] == "SM" + "9" * 32
    assert params["Body"] == "Hello"


# --- as its own process -------------------------------------------------------------------------

def test_fake_runs_as_a_separate_process_with_a_control_api():
    with fake_twilio_process() as control:
        client = make_twilio_client(account_sid=control.account_sid, auth_token=control.auth_token,
                                    base_url=control.base_url, timeout=5)
        control.script(PATIENT, code=21610, times=1)
        with pytest.raises(TwilioRestException) as caught:
            client.messages.create(to=PATIENT, from_=SENDER, body="[ref-proc]")
        client.messages.create(to=PATIENT, from_=SENDER, body="[ref-proc]")

        assert caught.value.code == 21610
        assert control.count("[ref-proc]") == 1
        assert control.count(to=PATIENT, body="[ref-proc]") == 1
        assert [r["status"] for r in control.requests()] == [400, 201]
        control.reset()
        assert control.messages() == []


# --- SMTP ---------------------------------------------------------------------------------------

def test_smtp_server_receives_a_multipart_email_from_djangos_smtp_backend(smtp_email_settings):
    mail = EmailMultiAlternatives(subject="Your appointment", body="See you on Thursday at 10:30.",
                                  from_email="Clinic <no-reply@touchpoint.local>", to=["giulia@example.com"],
                                  bcc=["audit@example.com"])
    mail.attach_alternative("<p>See you on <b>Thursday</b> at 10:30.</p>", "text/html")

    sent = mail.send()

    assert sent == 1
    (received,) = smtp_email_settings.messages
    assert received.mail_from == "no-reply@touchpoint.local"
    assert received.rcpt_tos == ["giulia@example.com", "audit@example.com"]
    assert received.subject == "Your appointment"
    assert received.message.get_content_type() == "multipart/alternative"
    assert received.body("plain").strip() == "See you on Thursday at 10:30."
    assert "<b>Thursday</b>" in received.body("html")
    assert "Bcc" not in received.message
