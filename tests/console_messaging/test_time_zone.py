"""Console pages show times in the staff member's own time zone."""

import datetime as dt

import pytest

from messaging.dispatch import dispatch_once
from messaging.models import Message
from messaging.services import message_send
from tests.console_messaging.test_pages import world  # noqa: F401  the same small clinic
from tests.factories import SiteFactory, staff_user

pytestmark = pytest.mark.django_db

SENT = dt.datetime(2030, 3, 4, 15, 30, tzinfo=dt.UTC)


@pytest.fixture
def new_york(org):
    return SiteFactory(organization=org, name="New York", slug="nyc", time_zone="America/New_York", phone_region="US")


@pytest.fixture
def logged_message(world):  # noqa: F811
    message_send(patient=world, purpose="care", template="hello", context={"first_name": "A"}, idempotency_key="tz")
    dispatch_once()
    Message.objects.update(created_at=SENT)


def test_the_message_log_shows_times_in_the_zone_of_the_staff_members_site(client, world, new_york,  # noqa: F811
                                                                           logged_message, site_a, settings):
    settings.TIME_ZONE = "UTC"  # the server's zone is neither
    # a member granted Roma reads Rome times; one granted New York, New York times
    client.force_login(staff_user(sites=[site_a], email="roma@example.org"))
    html = client.get("/console/messages/").content.decode()
    assert "4:30 p.m." in html and "Times are shown in Europe/Rome." in html  # 15:30 UTC in Rome (CET)

    client.force_login(staff_user(sites=[new_york], email="nyc@example.org"))
    html = client.get("/console/messages/").content.decode()
    assert "4:30 p.m." not in html  # the message belongs to Roma's patient: New York does not see it
    assert "Times are shown in America/New_York." in html


def test_a_member_across_zones_sees_the_deployments_zone(client, world, new_york, site_a, settings):  # noqa: F811
    settings.TIME_ZONE = "UTC"
    client.force_login(staff_user(sites=[site_a, new_york], email="both@example.org"))

    assert "Times are shown in UTC." in client.get("/console/messages/").content.decode()
