"""Console pages of the messaging spine, driven through the real views."""

import pytest

from channels_hub.inbound import inbound_event_process
from channels_hub.models import ChannelAccount, InboundEvent, SandboxMessage
from consent.models import AccessLog, ConsentEvent, Purpose
from messaging.dispatch import dispatch_once
from messaging.models import Conversation, Message, MessageTemplate
from messaging.services import message_send
from patients.services import contact_point_add
from tests.factories import PatientFactory, consent_event, staff_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(site_a, site_b):
    for ch in ("sms", "email"):
        ChannelAccount.objects.create(site=site_a, channel=ch, provider="sandbox",
                                      sender="+390611111111" if ch == "sms" else "roma@example.org")
    ChannelAccount.objects.create(site=site_b, channel="sms", provider="sandbox", sender="+48221111111")
    MessageTemplate.objects.create(name="hello", purpose="care", language="en", body="Hello {{ first_name }}")
    p = PatientFactory(home_site=site_a, language="en", preferred_channels=["sms", "email"])
    contact_point_add(patient=p, kind="phone", value="+39 347 555 0101")
    consent_event(p, "sms", Purpose.CARE)
    return p


def _login(client, sites):
    user = staff_user(sites=sites)
    client.force_login(user)
    return user


def test_message_log_filters_and_scope(client, world, site_b):
    message_send(patient=world, purpose="care", template="hello", context={"first_name": "A"}, idempotency_key="m1")
    dispatch_once()
    _login(client, [world.home_site])
    page = client.get("/console/messages/?status=delivered&channel=sms")
    assert page.status_code == 200 and "Hello A" in page.content.decode()
    assert "Hello A" not in client.get("/console/messages/?status=failed").content.decode()
    assert list(AccessLog.objects.filter(what="messages").values_list("patient_id", flat=True)) == [world.pk]
    client.force_login(staff_user(sites=[site_b]))
    assert "Hello A" not in client.get("/console/messages/").content.decode()
    assert client.get(f"/console/messages/{Message.objects.get().pk}/").status_code == 404


def test_message_log_site_filter_follows_the_patients_current_home_site(client, world, site_a, site_b):
    # given a message sent while the patient belonged to Roma, who has since moved to Warszawa
    message_send(patient=world, purpose="care", template="hello", context={"first_name": "A"}, idempotency_key="m3")
    dispatch_once()
    type(world).objects.filter(pk=world.pk).update(home_site=site_b)
    _login(client, [site_a, site_b])

    # then filtering by site shows it under the site that now sees it, as the scoping does
    assert "Hello A" in client.get(f"/console/messages/?site={site_b.pk}").content.decode()
    assert "Hello A" not in client.get(f"/console/messages/?site={site_a.pk}").content.decode()


def test_message_detail_shows_attempts(client, world):
    msg = message_send(patient=world, purpose="care", template="hello", context={"first_name": "A"}, idempotency_key="m2")
    dispatch_once()
    _login(client, [world.home_site])
    html = client.get(f"/console/messages/{msg.pk}/").content.decode()
    assert "Accepted by provider" in html


def test_device_reply_stop_goes_through_inbound_path(client, world, django_capture_on_commit_callbacks):
    _login(client, [world.home_site])
    with django_capture_on_commit_callbacks(execute=False):
        resp = client.post("/console/sandbox/reply/", {"channel": "sms", "address": "+393475550101", "body": "STOP"})
    assert resp.status_code == 302
    event = InboundEvent.objects.get(provider="sandbox")
    inbound_event_process(event.pk)
    assert ConsentEvent.objects.filter(patient=world, channel="sms", action="revoke", source="keyword").count() == 3
    dispatch_once()
    confirmation = SandboxMessage.objects.get(to="+393475550101")
    assert "START" in confirmation.body
    later = message_send(patient=world, purpose="care", template="hello", context={"first_name": "A"},
                         idempotency_key="after-stop")
    assert later.channel != "sms"


def test_inbox_reply_goes_out_on_the_channel_the_patient_used(client, world):
    _login(client, [world.home_site])
    from channels_hub.inbound import sandbox_reply

    inbound_event_process(sandbox_reply(channel="sms", from_address="+393475550101", to_address="+390611111111",
                                        body="Can I bring my daughter?").pk)
    conv = Conversation.objects.get(patient=world)
    assert conv.needs_attention
    assert "Can I bring" in client.get("/console/inbox/").content.decode() or client.get("/console/inbox/").status_code == 200
    page = client.get(f"/console/conversations/{conv.pk}/")
    token = page.context["form"].initial["token"]
    resp = client.post(f"/console/conversations/{conv.pk}/", {"text": "Yes, of course.", "token": token, "channel": ""})
    assert resp.status_code == 302
    client.post(f"/console/conversations/{conv.pk}/", {"text": "Yes, of course.", "token": token, "channel": ""})
    reply = Message.objects.get(direction="out", template="free_text")
    assert reply.channel == "sms" and reply.body == "Yes, of course."
    conv.refresh_from_db()
    assert not conv.needs_attention


def test_clinician_cannot_reply(client, world):
    from clinics.models import StaffRole

    client.force_login(staff_user(sites=[world.home_site], role=StaffRole.CLINICIAN))
    conv = Conversation.objects.create(patient=world, site=world.home_site, needs_attention=True)
    assert client.post(f"/console/conversations/{conv.pk}/", {"text": "x", "token": "t"}).status_code == 403


def test_patient_360_opens_the_patients_one_conversation(client, world, site_b):
    _login(client, [world.home_site])
    first = client.get(f"/console/patients/{world.pk}/conversation/")
    second = client.get(f"/console/patients/{world.pk}/conversation/")
    assert first.status_code == 302 and first.url == second.url
    assert Conversation.objects.filter(patient=world).count() == 1
    client.force_login(staff_user(sites=[site_b]))
    assert client.get(f"/console/patients/{world.pk}/conversation/").status_code == 404


def test_every_console_page_showing_a_record_logs_the_read(client, world):
    from consent.models import AccessLog
    from tests.factories import PatientFactory

    _login(client, [world.home_site])
    other = PatientFactory(home_site=world.home_site)
    for url in (f"/console/patients/{world.pk}/edit/", f"/console/patients/{world.pk}/preferences/",
                f"/console/patients/{world.pk}/merge/{other.pk}/", f"/console/sandbox/?patient={world.pk}"):
        assert client.get(url).status_code == 200, url
    assert set(AccessLog.objects.filter(patient=world).values_list("what", flat=True)) == {
        "profile", "preferences", "merge_review", "device"}
    assert AccessLog.objects.filter(patient=other, what="merge_review").count() == 1
