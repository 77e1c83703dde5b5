"""site_ids_for is THE scoping rule: who sees which site's patients. Plus API key lookup and storage."""

import datetime as dt

import pytest
from django.contrib.auth.models import AnonymousUser
from guardian.shortcuts import assign_perm

from clinics.models import ApiKey, StaffRole, User
from clinics.selectors import ACCESS_SITE, actor_can_write, api_key_find, site_ids_for, sites_for
from clinics.services import (
    api_key_create,
    api_key_revoke,
    api_key_touch,
    staff_grant_site,
    staff_revoke_site,
)
from tests.factories import OrganizationFactory, SiteFactory, api_key, staff_user


@pytest.fixture
def other_site(db):
    """A site of another organisation."""
    return SiteFactory(organization=OrganizationFactory(name="Altra Clinica", slug="altra"), slug="altra-roma")


def test_superuser_sees_every_site(site_a, site_b, other_site):
    root = User.objects.create_superuser(email="root@example.org", password="correct-horse-battery")

    assert site_ids_for(root) == {site_a.pk, site_b.pk, other_site.pk}


@pytest.mark.parametrize("role", list(StaffRole))
def test_staff_of_any_role_sees_only_the_sites_granted(role, site_a, site_b):
    user = staff_user(sites=[site_a], role=role)

    assert site_ids_for(user) == {site_a.pk}
    assert list(sites_for(user)) == [site_a]


def test_staff_without_grants_sees_nothing(site_a, site_b):
    user = staff_user(sites=[], role=StaffRole.ADMIN, organization=site_a.organization)

    assert site_ids_for(user) == set()


def test_granting_and_revoking_a_site_changes_what_staff_see(site_a, site_b):
    user = staff_user(sites=[site_a])

    staff_grant_site(user=user, site=site_b)
    assert site_ids_for(user) == {site_a.pk, site_b.pk}

    staff_revoke_site(user=user, site=site_a)
    assert site_ids_for(user) == {site_b.pk}


def test_a_global_permission_does_not_open_every_site(site_a, site_b):
    # given a front desk user holding the model-level permission (e.g. through a group or the admin)
    user = staff_user(sites=[site_a])
    assign_perm(ACCESS_SITE, user)

    # then only object grants count
    assert site_ids_for(User.objects.get(pk=user.pk)) == {site_a.pk}


def test_a_grant_on_another_organisations_site_is_ignored(site_a, other_site):
    user = staff_user(sites=[site_a])
    staff_grant_site(user=user, site=other_site)

    assert site_ids_for(user) == {site_a.pk}


def test_inactive_staff_sees_nothing_and_cannot_write(site_a):
    user = staff_user(sites=[site_a], role=StaffRole.ADMIN)
    User.objects.filter(pk=user.pk).update(is_active=False)
    user.refresh_from_db()

    assert site_ids_for(user) == set()
    assert actor_can_write(user) is False


def test_inactive_superuser_sees_nothing_and_cannot_write(site_a):
    root = User.objects.create_superuser(email="root@example.org", password="correct-horse-battery", is_active=False)

    assert site_ids_for(root) == set()
    assert actor_can_write(root) is False


def test_portal_user_sees_no_site(site_a):
    patient_account = User.objects.create_user(email="anna@example.org")

    assert site_ids_for(patient_account) == set()
    assert actor_can_write(patient_account) is False


def test_nobody_sees_nothing(site_a):
    assert site_ids_for(None) == set()
    assert site_ids_for(AnonymousUser()) == set()
    assert actor_can_write(None) is False
    assert actor_can_write(AnonymousUser()) is False


@pytest.mark.parametrize(
    ("role", "can_write"),
    [(StaffRole.ADMIN, True), (StaffRole.FRONT_DESK, True), (StaffRole.CLINICIAN, False)],
)
def test_staff_write_access_follows_the_role(role, can_write, site_a):
    assert actor_can_write(staff_user(sites=[site_a], role=role)) is can_write


def test_active_api_key_sees_its_sites(site_a, site_b):
    key, _plain = api_key(sites=[site_b])

    assert site_ids_for(key) == {site_b.pk}
    assert actor_can_write(key) is False


def test_revoked_api_key_sees_nothing_and_cannot_write(site_a):
    key, _plain = api_key(sites=[site_a], can_write=True)
    assert actor_can_write(key) is True

    api_key_revoke(key=key)
    key.refresh_from_db()

    assert key.revoked_at is not None
    assert site_ids_for(key) == set()
    assert actor_can_write(key) is False


def test_api_key_never_reaches_another_organisations_site(site_a, other_site):
    key, _plain = api_key(sites=[site_a])
    key.sites.add(other_site)

    assert site_ids_for(key) == {site_a.pk}


def test_api_key_find_returns_the_key_for_its_plaintext(site_a):
    key, plain = api_key(sites=[site_a])

    assert api_key_find(plain) == key
    assert api_key_find(f"  {plain}\n") == key


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda prefix, secret: f"{prefix}.{secret}x", id="wrong-secret"),
        pytest.param(lambda prefix, secret: f"{prefix}.{secret[:-1]}", id="truncated-secret"),
        pytest.param(lambda prefix, secret: f"ffffffff.{secret}", id="wrong-prefix"),
        pytest.param(lambda prefix, secret: f"{prefix}{secret}", id="no-dot"),
        pytest.param(lambda prefix, secret: f"{prefix}.", id="no-secret"),
        pytest.param(lambda prefix, secret: f".{secret}", id="no-prefix"),
        pytest.param(lambda prefix, secret: "", id="empty"),
    ],
)
def test_api_key_find_refuses_anything_but_the_exact_key(mangle, site_a):
    _key, plain = api_key(sites=[site_a])
    prefix, secret = plain.split(".", 1)

    assert api_key_find(mangle(prefix, secret)) is None


def test_api_key_find_refuses_a_revoked_key(site_a):
    key, plain = api_key(sites=[site_a])
    api_key_revoke(key=key)

    assert api_key_find(plain) is None


def test_api_key_find_does_not_accept_another_keys_secret(site_a):
    _first, first_plain = api_key(sites=[site_a], name="one")
    second, second_plain = api_key(sites=[site_a], name="two")

    mixed = f"{second.prefix}.{first_plain.split('.', 1)[1]}"

    assert api_key_find(mixed) is None
    assert api_key_find(second_plain) == second


def test_api_key_create_stores_only_the_hash_of_the_secret(site_a, site_b):
    key, plain = api_key_create(organization=site_a.organization, name="EHR", sites=[site_a, site_b], can_write=True)
    prefix, secret = plain.split(".", 1)

    row = ApiKey.objects.filter(pk=key.pk).values().get()
    assert row["prefix"] == prefix
    assert row["hashed_secret"] == ApiKey.hash_secret(secret)
    assert len(secret) >= 40  # 32 random bytes, url-safe
    assert not any(secret in str(value) for value in row.values())
    assert set(key.sites.values_list("pk", flat=True)) == {site_a.pk, site_b.pk}


def test_every_key_gets_its_own_prefix_and_secret(site_a):
    plains = [api_key(sites=[site_a], name=f"k{i}")[1] for i in range(5)]

    assert len({p.split(".")[0] for p in plains}) == 5
    assert len({p.split(".")[1] for p in plains}) == 5


def test_api_key_touch_writes_at_most_once_a_minute(site_a, time_machine):
    time_machine.move_to(dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC), tick=False)
    key, _plain = api_key(sites=[site_a])

    api_key_touch(key=key)
    key.refresh_from_db()
    first = key.last_used_at
    assert first == dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)

    time_machine.move_to(dt.datetime(2026, 3, 2, 9, 0, 30, tzinfo=dt.UTC), tick=False)
    api_key_touch(key=key)
    key.refresh_from_db()
    assert key.last_used_at == first

    time_machine.move_to(dt.datetime(2026, 3, 2, 9, 2, tzinfo=dt.UTC), tick=False)
    api_key_touch(key=key)
    key.refresh_from_db()
    assert key.last_used_at == dt.datetime(2026, 3, 2, 9, 2, tzinfo=dt.UTC)
