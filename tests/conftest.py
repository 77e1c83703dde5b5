import os
import shutil

import pytest
from django.conf import settings

pytest_plugins = ["tests.fakes.plugin"]


def _has_postgres() -> bool:
    return settings.IS_POSTGRES


def pytest_collection_modifyitems(config, items):
    """Skip, with the reason shown, tests whose real service is not configured here.

    CI (.ci/run) sets DATABASE_URL, REDIS_URL and installs chromium, so there every test runs.
    """
    chromium = shutil.which("chromium") or os.environ.get("CHROMIUM_PATH")
    skips = {
        "postgres": None if _has_postgres() else "needs PostgreSQL: set DATABASE_URL=postgres://…",
        "redis": None if settings.REDIS_URL else "needs Redis: set REDIS_URL=redis://…",
        "browser": None if chromium else "needs chromium (apt-get install chromium)",
    }
    for item in items:
        for marker, reason in skips.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


@pytest.fixture
def org(db):
    from tests.factories import OrganizationFactory

    return OrganizationFactory()


@pytest.fixture
def site_a(org):
    from tests.factories import SiteFactory

    return SiteFactory(organization=org, name="Roma Centro", slug="roma", time_zone="Europe/Rome", phone_region="IT")


@pytest.fixture
def site_b(org):
    from tests.factories import SiteFactory

    return SiteFactory(organization=org, name="Warszawa", slug="warszawa", time_zone="Europe/Warsaw", language="pl",
                       phone_region="PL")
