"""Redis (cache and broker) going away must cost time, never a message: the outbox rows are the truth.

Fast, in-process companions of the crash tests in test_crash.py.
"""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from kombu.exceptions import OperationalError

from channels_hub.models import ChannelAccount, SandboxMessage
from messaging import tasks
from messaging.dispatch import dispatch_once
from messaging.models import Message, MessageStatus, MessageTemplate
from messaging.services import SendRequest, message_send, message_send_many
from patients.models import Patient
from tests.integration.helpers import free_port, seed_sms_patients

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox_sms(site_a):
    ChannelAccount.objects.create(site=site_a, channel="sms", provider="sandbox", sender="+390612345678")
    MessageTemplate.objects.create(name="outage", purpose="care", language="en", body="Hi {{ first_name }}.")
    return site_a


@pytest.fixture
def redis_down(settings):
    """The cache points at a port where no Redis listens."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}}


def test_a_message_queued_while_redis_is_down_is_kept_and_delivered_later(sandbox_sms, redis_down):
    # Given a consenting patient and no Redis to kick a worker with
    patient = seed_sms_patients(sandbox_sms, 1)[0]

    # When a feature sends a message (the kick after commit cannot reach Redis)
    msg = message_send(patient=patient, purpose="care", template="outage", context={"first_name": "Ada"},
                       idempotency_key="outage-1")

    # Then the send succeeded, the row waits in the outbox, and the next dispatch (the relay's) delivers it
    assert Message.objects.get(pk=msg.pk).status == MessageStatus.QUEUED
    assert dispatch_once() == 1
    assert Message.objects.get(pk=msg.pk).status == MessageStatus.DELIVERED
    assert SandboxMessage.objects.filter(reference=str(msg.pk)).count() == 1


def test_a_dispatch_task_delivers_the_batch_it_claimed_when_the_broker_refuses_the_next_task(sandbox_sms, settings):
    # Given two due messages and batches of one, so the task wants to hand the rest to a sibling
    settings.DISPATCH_BATCH_SIZE = 1
    patients = seed_sms_patients(sandbox_sms, 2)
    sent = [message_send(patient=p, purpose="care", template="outage", context={"first_name": "Ada"},
                         idempotency_key=f"outage-{p.pk}") for p in patients]

    # When the broker is down as the task enqueues its successor
    with mock.patch.object(tasks.dispatch, "delay", autospec=True, side_effect=OperationalError("broker down")):
        claimed = tasks.dispatch()

    # Then the batch it claimed still went out (not left `sending` until its lease ran out),
    # and the other one waits, queued, for the relay
    assert claimed == 1
    statuses = sorted(Message.objects.filter(pk__in=[m.pk for m in sent]).values_list("status", flat=True))
    assert statuses == [MessageStatus.DELIVERED, MessageStatus.QUEUED]


def test_a_sweep_batch_costs_the_same_queries_whatever_its_size(sandbox_sms):
    # Given patients loaded without their home sites, as a sweep over appointments would load them
    seed_sms_patients(sandbox_sms, 8)
    patients = list(Patient.objects.order_by("pk"))

    def queries_for(batch, prefix):
        with CaptureQueriesContext(connection) as queries:
            message_send_many([SendRequest(patient=p, purpose="care", template="outage",
                                           context={"first_name": p.given_name}, idempotency_key=f"{prefix}-{p.pk}")
                               for p in batch])
        return len(queries)

    # When two and then six of them are sent a message
    small, large = queries_for(patients[:2], "small"), queries_for(patients[2:], "large")

    # Then nothing is fetched once per patient (their sites included)
    assert small == large
