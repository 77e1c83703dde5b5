import datetime as dt

import pytest
import time_machine

from channels_hub.models import SandboxMessage
from messaging.dispatch import dispatch_once
from messaging.models import Message, MessageStatus, MessageTemplate
from messaging.services import message_send

pytestmark = pytest.mark.django_db


@pytest.fixture
def reminder_template():
    for lang, body in (("it", "Ciao {{ first_name }}, appuntamento {{ when }}."), ("en", "Hi {{ first_name }}, appointment {{ when }}.")):
        MessageTemplate.objects.create(name="reminder", purpose="care", language=lang, body=body)


@time_machine.travel(dt.datetime(2030, 3, 4, 10, 0, tzinfo=dt.UTC), tick=False)
def test_send_goes_out_once_on_first_allowed_channel(patient, sandbox_accounts, reminder_template):
    msg = message_send(patient=patient, purpose="care", template="reminder",
                       context={"first_name": "Anna", "when": "lun 10:00"}, idempotency_key="k1")
    again = message_send(patient=patient, purpose="care", template="reminder",
                         context={"first_name": "Anna", "when": "lun 10:00"}, idempotency_key="k1")
    assert again.pk == msg.pk
    assert msg.channel == "sms"  # whatsapp skipped: no opt-in
    assert msg.routing[0] == {"channel": "whatsapp", "skipped": "no_opt_in"}
    assert msg.body == "Ciao Anna, appuntamento lun 10:00."
    assert dispatch_once() == 1
    msg.refresh_from_db()
    assert msg.status == MessageStatus.DELIVERED
    assert SandboxMessage.objects.filter(to="+393471234567").count() == 1
    assert dispatch_once() == 0
    assert Message.objects.count() == 1

