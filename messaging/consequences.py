"""What a provider's permanent refusal means for the patient's record.

21610 (the number replied STOP at the carrier/Twilio): consent withdrawn on that channel.
21211 / 21614 / an email address refused: that contact point is marked invalid (kept, not deleted).
"""

from __future__ import annotations

from consent.models import ConsentSource
from consent.services import consent_revoke_channel
from messaging.models import Message
from messaging.routing import CONTACT_KIND
from patients.models import ContactPoint
from patients.services import contact_point_invalidate

UNSUBSCRIBED = {"21610"}
INVALID_ADDRESS = {
    "21211": "Twilio 21211: invalid number",
    "21614": "Twilio 21614: not a mobile number",
    "30006": "Twilio 30006: landline or unreachable carrier",
    "30005": "Twilio 30005: unknown destination",
    "invalid_address": "mail server refused the address",
}


def apply_consequences(message: Message, code: str) -> None:
    if message.patient is None or not code:
        return
    kind = CONTACT_KIND.get(message.channel)
    if code in UNSUBSCRIBED:
        # Every patient reached through this address on this channel is unsubscribed alike.
        sharing = ContactPoint.objects.filter(kind=kind, value=message.to_address).select_related("patient")
        for patient in {cp.patient for cp in sharing} | {message.patient}:
            if not patient.is_merged:
                consent_revoke_channel(patient=patient, channel=message.channel, source=ConsentSource.PROVIDER,
                                       note=f"provider error {code}: recipient unsubscribed")
    elif code in INVALID_ADDRESS:
        for cp in ContactPoint.objects.filter(patient=message.patient, kind=kind, value=message.to_address):
            contact_point_invalidate(contact_point=cp, reason=INVALID_ADDRESS[code])
