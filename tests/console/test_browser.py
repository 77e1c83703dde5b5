"""Front desk signs in, finds a patient by phone with the live search and opens Patient 360, in chromium."""

import os

import pytest
from django.db import connections

from consent.models import AccessLog
from tests.console.conftest import PASSWORD
from tests.factories import consent_event

# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls there otherwise.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# A picture of Patient 360 for reviewers (CI may keep it as an artifact).
SCREENSHOT = os.environ.get("CONSOLE_SCREENSHOT", "/tmp/console-360.png")  # noqa: S108


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        # No keep-alive: a live_server thread holding a socket (and its database connection) past
        # the test would block dropping the PostgreSQL test database.
        context = browser.new_context(viewport={"width": 1280, "height": 900}, extra_http_headers={"Connection": "close"})
        page = context.new_page()
        page.set_default_timeout(10_000)
        yield page
        context.close()
        browser.close()


@pytest.mark.browser
def test_staff_signs_in_finds_a_patient_by_phone_and_opens_patient_360(live_server, transactional_db, browser_page,
                                                                        front_desk, mario, giulia):
    # given a patient who agreed to care reminders by SMS
    consent_event(mario, "sms", "care")
    page = browser_page

    # when front desk signs in with email and password
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Email").fill(front_desk.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{live_server.url}/console/")

    # and types the mobile number in national format: the results update as they type (htmx)
    page.get_by_label("Search patients").press_sequentially("347 123 4567", delay=20)
    page.wait_for_url(lambda url: "q=347%20123%204567" in url)  # pushed by htmx, no form submit
    results = page.locator("#results")
    results.get_by_role("link", name="Rossi, Mario").wait_for()
    assert results.get_by_text("Bianchi").count() == 0
    assert results.get_by_text("1 patient matches").is_visible()

    # and opens Patient 360
    results.get_by_role("link", name="Rossi, Mario").click()
    page.wait_for_url(f"{live_server.url}/console/patients/{mario.pk}/")

    # then the name, the consent matrix and the new access-log entry are on the page
    assert page.get_by_role("heading", name="Mario Rossi", level=1).is_visible()
    matrix = page.locator("#consent table")
    sms_row = matrix.get_by_role("row").filter(has=page.get_by_role("rowheader", name="SMS"))
    assert sms_row.get_by_text("Granted").is_visible()
    assert matrix.get_by_text("Not asked").count() == 8
    log = page.locator("#access-log tbody tr").first
    assert "Patient 360 page" in log.inner_text() and "desk" in log.inner_text()
    entry = AccessLog.objects.get(patient=mario)
    # ORM calls made while Playwright's loop runs get a connection of their own: close it, or
    # PostgreSQL refuses to drop the test database at the end of the session.
    connections.close_all()
    assert (entry.actor_id, entry.what, entry.ip_address) == (front_desk.pk, "view_360", "127.0.0.1")

    # the page fits the window: nothing wider than the viewport
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    page.screenshot(path=SCREENSHOT, full_page=True)
