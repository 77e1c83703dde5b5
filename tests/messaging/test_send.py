"""message_send: the single entry point. Idempotency, input errors naming the field, the caller's
transaction, and claims that never hand one message to two workers."""

import datetime as dt
import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from channels_hub.models import SandboxMessage
from config.errors import DomainError
from consent.models import Purpose
from messaging.dispatch import claim, deliver
from messaging.models import Conversation, Message, MessageStatus
from messaging.services import SendRequest, conversations_for, message_send, message_send_many
from patients.services import contact_point_add
from tests.factories import PatientFactory, consent_event
from tests.messaging.spine import CONSENTED_AT, REMINDER_CONTEXT, drain

NOW = dt.datetime(2030, 3, 4, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def frozen(time_machine):
    time_machine.move_to(NOW, tick=False)
    return time_machine


def send_reminder(patient, key="reminder-1", **kwargs):
    kwargs.setdefault("context", REMINDER_CONTEXT)
    return message_send(patient=patient, purpose="care", template="reminder", idempotency_key=key, **kwargs)


@pytest.mark.django_db
def test_same_idempotency_key_returns_the_same_message_even_with_other_content(patient, sandbox_accounts,
                                                                              reminder_template, frozen):
    first = send_reminder(patient)

    again = send_reminder(patient, context={"first_name": "Anna", "when": "mar 11:00"})

    assert again.pk == first.pk
    assert again.body == first.body
    assert Message.objects.count() == 1


@pytest.mark.django_db
def test_idempotency_key_of_another_patient_is_a_conflict(patient, site_a, sandbox_accounts, reminder_template,
                                                          frozen):
    send_reminder(patient)
    other = PatientFactory(home_site=site_a)

    with pytest.raises(DomainError) as caught:
        send_reminder(other)

    assert (caught.value.field, caught.value.status) == ("idempotency_key", 409)


@pytest.mark.django_db
def test_batch_with_a_repeated_key_is_refused(patient, sandbox_accounts, reminder_template):
    req = SendRequest(patient=patient, purpose="care", template="reminder", context=REMINDER_CONTEXT,
                      idempotency_key="same")

    with pytest.raises(ValidationError) as caught:
        message_send_many([req, req])

    assert set(caught.value.message_dict) == {"idempotency_key"}
    assert not Message.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "kwargs"), [
    ("purpose", {"purpose": "gossip"}),
    ("channel", {"channel": "pigeon"}),
    ("idempotency_key", {"idempotency_key": ""}),
    ("idempotency_key", {"idempotency_key": "k" * 201}),
    ("context", {"context": ["Anna"]}),
    ("not_before", {"not_before": dt.datetime(2030, 3, 4, 15, 0)}),  # noqa: DTZ001  naive on purpose
])
def test_bad_input_is_a_validation_error_naming_the_field(patient, sandbox_accounts, reminder_template, field, kwargs):
    args = {"patient": patient, "purpose": "care", "template": "reminder", "context": REMINDER_CONTEXT,
            "idempotency_key": "k1", **kwargs}

    with pytest.raises(ValidationError) as caught:
        message_send(**args)

    assert set(caught.value.message_dict) == {field}


@pytest.mark.django_db
def test_merged_patient_cannot_be_messaged(patient, site_a, sandbox_accounts, reminder_template):
    survivor = PatientFactory(home_site=site_a)
    patient.merged_into = survivor
    patient.save()

    with pytest.raises(DomainError) as caught:
        send_reminder(patient)

    assert (caught.value.field, caught.value.status) == ("patient", 409)


@pytest.mark.django_db
def test_message_is_part_of_the_callers_transaction(patient, sandbox_accounts, reminder_template, frozen):
    # given a caller whose transaction fails after queueing a message
    with pytest.raises(RuntimeError), transaction.atomic():
        send_reminder(patient)
        raise RuntimeError("the appointment could not be saved")

    # then no message exists and nothing goes out
    assert not Message.objects.exists()
    assert drain() == 0


@pytest.mark.django_db
def test_batch_keeps_existing_messages_when_a_concurrent_insert_collides(patient, site_a, sandbox_accounts,
                                                                         reminder_template, frozen):
    # given one reminder of the batch was queued by an earlier run
    earlier = send_reminder(patient, key="sweep:1")
    other = PatientFactory(home_site=site_a, language="it", preferred_channels=["sms"])
    contact_point_add(patient=other, kind="phone", value="+39 347 765 4321")
    consent_event(other, "sms", Purpose.CARE, at=CONSENTED_AT)
    requests = [
        SendRequest(patient=patient, purpose="care", template="reminder", context=REMINDER_CONTEXT,
                    idempotency_key="sweep:1"),
        SendRequest(patient=other, purpose="care", template="reminder", context=REMINDER_CONTEXT,
                    idempotency_key="sweep:2"),
    ]

    # and another worker inserts a clashing row just as this batch inserts its own
    def collide(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "messaging_message"') and not collided:
            collided.append(True)
            raise IntegrityError("duplicate key value violates unique constraint (simulated race)")
        return execute(sql, params, many, context)

    collided: list[bool] = []
    with connection.execute_wrapper(collide):
        result = message_send_many(requests)

    # then every request gets its message: the earlier one and the new one
    assert collided
    assert result[0].pk == earlier.pk
    assert result[1].patient == other and result[1].pk is not None
    assert Message.objects.count() == 2


@pytest.mark.django_db
def test_whatsapp_window_closing_before_delivery_without_template_falls_back(whatsapp_patient, sandbox_accounts,
                                                                             reminder_template, frozen):
    # given WhatsApp free text queued while the window was open, with no approved template
    from messaging.models import MessageTemplate

    MessageTemplate.objects.filter(name="reminder").update(whatsapp_content_sid="", whatsapp_variables=[])
    conv = conversations_for([whatsapp_patient])[whatsapp_patient.pk]
    Conversation.objects.filter(pk=conv.pk).update(whatsapp_window_ends_at=NOW + dt.timedelta(minutes=30))
    msg = send_reminder(whatsapp_patient)
    assert msg.channel == "whatsapp"

    # when the worker gets to it after the window closed
    frozen.shift(dt.timedelta(hours=1))
    drain()

    # then it was not sent on WhatsApp but by SMS
    msg.refresh_from_db()
    assert (msg.channel, msg.status) == ("sms", MessageStatus.DELIVERED)
    assert {"channel": "whatsapp", "failed": "outside_session_window"} in msg.routing
    assert list(SandboxMessage.objects.values_list("channel", flat=True)) == ["sms"]


@pytest.mark.django_db
def test_consent_withdrawn_by_staff_after_queueing_stops_the_send(patient, sandbox_accounts, reminder_template,
                                                                  frozen):
    # given a reminder queued for SMS
    msg = send_reminder(patient)
    # when staff record that the patient withdrew care messages by SMS, before the worker runs
    consent_event(patient, "sms", Purpose.CARE, action="revoke")
    drain()

    # then it went by email instead
    msg.refresh_from_db()
    assert msg.channel == "email"
    assert not SandboxMessage.objects.filter(channel="sms").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_never_claim_the_same_message(site_a, sandbox_accounts, reminder_template):
    # given 120 due messages
    patients = []
    for i in range(120):
        p = PatientFactory(home_site=site_a, language="it", preferred_channels=["sms"])
        contact_point_add(patient=p, kind="phone", value=f"+39 347 100 {i:04d}", record=False)
        consent_event(p, "sms", Purpose.CARE, at=CONSENTED_AT)
        patients.append(p)
    message_send_many([
        SendRequest(patient=p, purpose="care", template="reminder", context=REMINDER_CONTEXT,
                    idempotency_key=f"c:{p.pk}", urgent=True)
        for p in patients
    ])

    # when four workers claim in small batches at the same time
    claimed: list[list[int]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def worker(out):
        try:
            start.wait()
            while ids := claim(7):
                out.extend(ids)
                deliver(ids)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(out,)) for out in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    # then each message was claimed by exactly one worker and delivered once
    every = [pk for out in claimed for pk in out]
    assert len(every) == len(set(every)) == 120
    assert SandboxMessage.objects.count() == 120
    assert Message.objects.filter(status=MessageStatus.DELIVERED).count() == 120
