"""Who may see what. Every patient query on a surface is scoped through `site_ids_for`."""

from __future__ import annotations

from django.db.models import QuerySet
from guardian.shortcuts import get_objects_for_user

from clinics.models import ApiKey, Site, User

ACCESS_SITE = "clinics.access_site"


def site_ids_for(actor: User | ApiKey | None) -> set[int]:
    """Ids of the sites whose patients `actor` may see (empty for anyone else)."""
    return set(_granted_sites(actor).values_list("id", flat=True))


def _granted_sites(actor: User | ApiKey | None) -> QuerySet[Site]:
    if actor is None or not getattr(actor, "is_authenticated", False):
        return Site.objects.none()
    if isinstance(actor, ApiKey):
        if actor.revoked_at is not None:
            return Site.objects.none()
        # A grant never reaches across organisations, whatever rows exist.
        return actor.sites.filter(organization_id=actor.organization_id)
    if not actor.is_active:
        return Site.objects.none()
    if actor.is_superuser:
        return Site.objects.all()
    member = actor.staff_member
    if member is None:
        return Site.objects.none()
    return get_objects_for_user(actor, ACCESS_SITE, klass=Site, accept_global_perms=False).filter(
        organization_id=member.organization_id
    )


def sites_for(actor: User | ApiKey | None) -> QuerySet[Site]:
    return Site.objects.filter(id__in=site_ids_for(actor)).order_by("name")


def actor_can_write(actor: User | ApiKey | None) -> bool:
    if isinstance(actor, ApiKey):
        return actor.can_write and actor.revoked_at is None
    if actor is None or not getattr(actor, "is_authenticated", False) or not actor.is_active:
        return False
    if actor.is_superuser:
        return True
    member = actor.staff_member
    return bool(member and member.can_write_patients)


def api_key_find(raw: str) -> ApiKey | None:
    """The active key whose secret is `raw` (format `<prefix>.<secret>`), else None."""
    prefix, _, secret = (raw or "").strip().partition(".")
    if not prefix or not secret:
        return None
    key = ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).select_related("organization").first()
    if key is None:
        return None
    import hmac

    if not hmac.compare_digest(key.hashed_secret, ApiKey.hash_secret(secret)):
        return None
    return key


def staff_time_zone(user: User):
    """The zone console pages show times in: that of the staff member's sites when they share one,
    else the deployment's TIME_ZONE (a member working across zones sees each page say which)."""
    import zoneinfo

    from django.conf import settings

    zones = list(_granted_sites(user).order_by().values_list("time_zone", flat=True).distinct()[:2])  # one query
    return zoneinfo.ZoneInfo(zones[0] if len(zones) == 1 else settings.TIME_ZONE)
