"""Writes for the organisation layer."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from clinics.models import ApiKey, Organization, Site, StaffMember, StaffRole, User
from clinics.selectors import ACCESS_SITE


@transaction.atomic
def staff_create(
    *, organization: Organization, email: str, password: str | None, role: str, sites: Iterable[Site],
    display_name: str = "",
) -> StaffMember:
    user = User.objects.create_user(email=email, password=password, is_staff=role == StaffRole.ADMIN)
    member = StaffMember.objects.create(user=user, organization=organization, role=role, display_name=display_name)
    for site in sites:
        staff_grant_site(user=user, site=site)
    return member


def staff_grant_site(*, user: User, site: Site) -> None:
    assign_perm(ACCESS_SITE, user, site)


def staff_revoke_site(*, user: User, site: Site) -> None:
    remove_perm(ACCESS_SITE, user, site)


@transaction.atomic
def api_key_create(
    *, organization: Organization, name: str, sites: Iterable[Site], can_write: bool = False, created_by: User | None = None
) -> tuple[ApiKey, str]:
    """Create a key and return it with its one-time plaintext `<prefix>.<secret>`."""
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        organization=organization, name=name, prefix=prefix, hashed_secret=ApiKey.hash_secret(secret),
        can_write=can_write, created_by=created_by,
    )
    key.sites.set(list(sites))
    return key, f"{prefix}.{secret}"


def api_key_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_key_touch(*, key: ApiKey) -> None:
    """Record use at most once a minute, so a busy integrator does not write on every request."""
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)


@transaction.atomic
def organization_create(*, name: str, slug: str, default_language: str = "en") -> Organization:
    organization = Organization(name=name.strip(), slug=slug, default_language=default_language)
    organization.full_clean()
    organization.save()
    return organization


@transaction.atomic
def site_create(
    *, organization: Organization, name: str, slug: str, time_zone: str, language: str = "en",
    phone_region: str = "IT", address: str = "", phone: str = "", email: str = "", opening_hours: dict | None = None,
) -> Site:
    """A clinic location. Raises ValidationError naming the field (e.g. an unknown time zone)."""
    site = Site(
        organization=organization, name=name.strip(), slug=slug, time_zone=time_zone, language=language,
        phone_region=phone_region.upper(), address=address, phone=phone, email=email,
        opening_hours=opening_hours or {},
    )
    site.full_clean()
    site.save()
    return site


def user_set_superuser(*, user: User, is_superuser: bool = True) -> None:
    """Make `user` a Django superuser (admin site, every site) or take it back."""
    User.objects.filter(pk=user.pk).update(is_superuser=is_superuser, is_staff=is_superuser or user.is_staff)
    user.is_superuser = is_superuser
    user.is_staff = is_superuser or user.is_staff
