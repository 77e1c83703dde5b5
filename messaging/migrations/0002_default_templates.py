"""The wordings Touchpoint needs out of the box: keyword confirmations and staff free text.

Clinics edit them in the admin; this only creates what is missing.
"""

from django.db import migrations

TEMPLATES = [
    # name, purpose, language, body
    ("free_text", "care", "en", "{{ text }}"),
    ("free_text", "care", "it", "{{ text }}"),
    ("free_text", "care", "pl", "{{ text }}"),
    ("keyword_stop", "care", "en",
     "{{ site_name }}: you will no longer receive messages on this channel. Reply START to receive them again."),
    ("keyword_stop", "care", "it",
     "{{ site_name }}: non riceverà più messaggi su questo canale. Risponda START per riceverli di nuovo."),
    ("keyword_stop", "care", "pl",
     "{{ site_name }}: wysyłka wiadomości tym kanałem została wstrzymana. Aby ją wznowić, prosimy odpowiedzieć START."),
    ("keyword_start", "care", "en",
     "{{ site_name }}: you will receive appointment messages on this channel again. Reply STOP to stop."),
    ("keyword_start", "care", "it",
     "{{ site_name }}: riceverà di nuovo i messaggi sugli appuntamenti su questo canale. Risponda STOP per non riceverli più."),
    ("keyword_start", "care", "pl",
     "{{ site_name }}: wiadomości o wizytach będą ponownie wysyłane tym kanałem. Aby zrezygnować, prosimy odpowiedzieć STOP."),
    ("keyword_help", "care", "en",
     "{{ site_name }}: appointment messages. Questions: {{ site_phone }}. Reply STOP to stop, START to resume."),
    ("keyword_help", "care", "it",
     "{{ site_name }}: messaggi sugli appuntamenti. Per domande: {{ site_phone }}. Risponda STOP per non riceverli, START per riprendere."),
    ("keyword_help", "care", "pl",
     "{{ site_name }}: wiadomości o wizytach. Pytania: {{ site_phone }}. Aby zrezygnować, prosimy odpowiedzieć STOP, aby wznowić: START."),
]


def forwards(apps, schema_editor):
    MessageTemplate = apps.get_model("messaging", "MessageTemplate")
    for name, purpose, language, body in TEMPLATES:
        MessageTemplate.objects.get_or_create(
            name=name, channel="", language=language, defaults={"purpose": purpose, "body": body}
        )


class Migration(migrations.Migration):
    dependencies = [("messaging", "0001_initial")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
