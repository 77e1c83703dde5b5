from rest_framework import permissions

from clinics.models import ApiKey
from clinics.selectors import actor_can_write


class IsStaffOrApiKey(permissions.BasePermission):
    """Staff users (session) and API keys may use the API; writes need write rights.

    Which patients they see is decided by `site_ids_for` in each queryset (404 outside it).
    """

    def has_permission(self, request, view):
        actor = request.user
        if isinstance(actor, ApiKey):
            allowed = actor.revoked_at is None
        else:
            allowed = bool(actor and actor.is_authenticated and actor.is_active and actor.is_clinic_staff)
        if not allowed:
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        return actor_can_write(actor)
