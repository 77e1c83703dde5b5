"""Templates: language fallback, safe placeholders (errors name the field), minimum necessary content, and
SMS segment counting."""

import pytest
from django.core.exceptions import ValidationError

from messaging.models import MessageStatus, MessageTemplate
from messaging.rendering import sms_segments
from messaging.services import message_send
from tests.fakes.twilio_server import segments as twilio_segments

pytestmark = pytest.mark.django_db

WORDING = {"pl": "Cześć {{ first_name }}, wizyta {{ when }}.", "it": "Ciao {{ first_name }}, appuntamento {{ when }}.",
           "en": "Hi {{ first_name }}, appointment {{ when }}."}
CONTEXT = {"first_name": "Jan", "when": "pon 10:00"}


@pytest.mark.parametrize(("available", "expected_language"), [
    (("pl", "it", "en"), "pl"),  # the patient's language
    (("it", "en"), "it"),  # else the site's (Roma Centro speaks Italian)
    (("en",), "en"),  # else English
], ids=["patient-language", "site-language", "english"])
def test_wording_falls_back_from_patient_language_to_site_language_to_english(
        patient, sandbox_accounts, available, expected_language):
    # given a Polish-speaking patient of an Italian site, and wordings in some languages
    patient.language = "pl"
    patient.save()
    for lang in available:
        MessageTemplate.objects.create(name="greeting", purpose="care", language=lang, body=WORDING[lang])

    # when a message is sent
    msg = message_send(patient=patient, purpose="care", template="greeting", context=CONTEXT, idempotency_key="g1")

    # then it is in the first language available along the fallback chain
    assert msg.language == expected_language
    assert msg.body == WORDING[expected_language].replace("{{ first_name }}", "Jan").replace("{{ when }}", "pon 10:00")


def test_channel_specific_wording_wins_over_the_generic_one(patient, sandbox_accounts):
    # given a generic Italian wording and a shorter one for SMS
    MessageTemplate.objects.create(name="greeting", purpose="care", language="it", body=WORDING["it"])
    MessageTemplate.objects.create(name="greeting", purpose="care", language="it", channel="sms",
                                   body="{{ first_name }}: {{ when }}")

    # when it goes by SMS
    msg = message_send(patient=patient, purpose="care", template="greeting", context=CONTEXT, idempotency_key="g1")

    # then the SMS wording is used
    assert (msg.channel, msg.body) == ("sms", "Jan: pon 10:00")


def test_missing_context_variable_is_a_validation_error_naming_it(patient, sandbox_accounts, reminder_template):
    # given a reminder that needs {{ when }}
    # when it is sent without it
    with pytest.raises(ValidationError) as caught:
        message_send(patient=patient, purpose="care", template="reminder", context={"first_name": "Anna"},
                     idempotency_key="r1")

    # then the error names context.when, and nothing was queued
    assert set(caught.value.message_dict) == {"context.when"}
    from messaging.models import Message

    assert not Message.objects.exists()


def test_none_as_a_context_value_counts_as_missing(patient, sandbox_accounts, reminder_template):
    with pytest.raises(ValidationError) as caught:
        message_send(patient=patient, purpose="care", template="reminder",
                     context={"first_name": "Anna", "when": None}, idempotency_key="r1")

    assert set(caught.value.message_dict) == {"context.when"}


def test_template_using_a_variable_its_purpose_does_not_allow_fails_full_clean_naming_body():
    # given a care template that would put a diagnosis in the message
    template = MessageTemplate(name="leaky", purpose="care", language="en",
                               body="Hi {{ first_name }}, your {{ diagnosis }} results are ready.")

    # when it is validated
    with pytest.raises(ValidationError) as caught:
        template.full_clean()

    # then the body is refused, naming the variable
    assert set(caught.value.message_dict) == {"body"}
    assert "diagnosis" in caught.value.message_dict["body"][0]


def test_template_logic_is_refused():
    template = MessageTemplate(name="logic", purpose="care", language="en",
                               body="{% if first_name %}Hi {{ first_name }}{% endif %}")

    with pytest.raises(ValidationError) as caught:
        template.full_clean()

    assert set(caught.value.message_dict) == {"body"}


def test_subject_is_checked_like_the_body():
    template = MessageTemplate(name="subj", purpose="surveys", language="en", subject="About {{ medication }}",
                               body="{{ survey_link }}")

    with pytest.raises(ValidationError) as caught:
        template.full_clean()

    assert set(caught.value.message_dict) == {"subject"}


def test_allowed_variables_and_a_valid_content_sid_pass_full_clean():
    template = MessageTemplate(name="ok", purpose="care", language="en", body="Hi {{first_name}}, {{ portal_link }}",
                               whatsapp_content_sid="HX" + "0" * 32, whatsapp_variables=["first_name", "portal_link"])

    template.full_clean()  # no error


def test_malformed_content_sid_is_refused():
    template = MessageTemplate(name="wa", purpose="care", language="en", body="Hi",
                               whatsapp_content_sid="HX123")

    with pytest.raises(ValidationError) as caught:
        template.full_clean()

    assert set(caught.value.message_dict) == {"whatsapp_content_sid"}


def test_too_long_for_sms_falls_to_the_next_channel(patient, sandbox_accounts):
    # given a wording longer than an SMS may be (1600 characters)
    MessageTemplate.objects.create(name="long", purpose="care", language="it", body="{{ text }}")

    # when it is sent
    msg = message_send(patient=patient, purpose="care", template="long", context={"text": "x" * 1601},
                       idempotency_key="l1")

    # then SMS is skipped for that reason and email carries it
    assert {"channel": "sms", "skipped": "body_too_long"} in msg.routing
    assert (msg.channel, msg.status) == ("email", MessageStatus.QUEUED)


@pytest.mark.parametrize(("text", "encoding", "characters", "segments"), [
    ("", "GSM-7", 0, 0),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("Perché è già lì? àèéìòù", "GSM-7", 23, 1),  # Italian accents are in the GSM-7 alphabet
    ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
    ("€" * 81, "GSM-7", 162, 2),
    ("ą" * 70, "UCS-2", 70, 1),  # Polish letters are not GSM-7
    ("ą" * 71, "UCS-2", 71, 2),
    ("ą" * 134, "UCS-2", 134, 2),
    ("ą" * 135, "UCS-2", 135, 3),
    ("a" * 69 + "😀", "UCS-2", 71, 2),  # an emoji is two UTF-16 units
])
def test_sms_segments_follow_gsm7_and_ucs2_limits(text, encoding, characters, segments):
    assert sms_segments(text) == {"encoding": encoding, "characters": characters, "segments": segments}
    if text:  # and agree with the fake Twilio's count (num_segments it reports)
        assert twilio_segments(text) == segments
