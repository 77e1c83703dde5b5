"""A patient signs in with an emailed code and withdraws a consent, in a real (headless) browser."""

import os

import pytest
from django.db import connections

from consent.models import ConsentEvent
from consent.wording import current_wording
from tests.factories import consent_event
from tests.portal.conftest import code_from_outbox

# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls there otherwise.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# A phone-sized picture of the consents page for reviewers (CI may keep it as an artifact).
SCREENSHOT = os.environ.get("PORTAL_SCREENSHOT", "/tmp/portal-consents.png")  # noqa: S108


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1, is_mobile=True,
                                      has_touch=True)
        page = context.new_page()
        page.set_default_timeout(10_000)
        yield page
        context.close()
        browser.close()
        # Database connections opened while Playwright's loop runs live in that loop's context,
        # out of reach of pytest-django's teardown; close them here or PostgreSQL keeps them open.
        connections.close_all()


@pytest.mark.browser
def test_patient_signs_in_by_code_and_withdraws_sms_care_consent(live_server, transactional_db, browser_page,
                                                                  make_patient):
    # given a patient whose email is on file and who agreed to care messages by SMS
    patient = make_patient(email="marta@example.org", phone="+393471112233", linked=False, given_name="Marta",
                           family_name="Gallo")
    consent_event(patient, "sms", "care")
    page = browser_page

    # when she asks for a code, reads it from her mail and types it in
    page.goto(f"{live_server.url}/portal/login/")
    page.get_by_label("Email").fill("marta@example.org")
    page.get_by_role("button", name="Send me a code").click()
    page.wait_for_url("**/accounts/login/code/confirm/")
    page.get_by_label("Code").fill(code_from_outbox("marta@example.org"))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/portal/")
    assert page.get_by_role("heading", name="Hello, Marta").is_visible()

    # and opens "My consents" and turns off care reminders by SMS
    page.get_by_role("link", name="My consents").first.click()
    page.wait_for_url("**/portal/consents/")
    sms_care = page.locator('button[data-channel="sms"][data-purpose="care"]')
    assert sms_care.get_attribute("aria-checked") == "true"
    sms_care.click()
    page.wait_for_url("**/portal/consents/#purpose-care")

    # then the switch shows off, the change is confirmed, and the ledger has the portal's row
    sms_care = page.locator('button[data-channel="sms"][data-purpose="care"]')
    assert sms_care.get_attribute("aria-checked") == "false"
    assert page.get_by_role("status").get_by_text("turned off").is_visible()
    event = ConsentEvent.objects.filter(patient=patient).first()
    assert (event.channel, event.purpose, event.action, event.source) == ("sms", "care", "revoke", "portal")
    assert event.wording_version == current_wording("care")[0]
    assert event.actor.email == "marta@example.org"
    assert event.ip_address == "127.0.0.1"

    # the page fits a phone: nothing wider than the viewport
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=SCREENSHOT, full_page=True)
