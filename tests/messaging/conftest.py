from tests.messaging.spine import (  # noqa: F401  fixtures
    monday_morning,
    patient,
    public_url,
    reminder_template,
    sandbox_accounts,
    twilio,
    twilio_accounts,
    whatsapp_patient,
)
