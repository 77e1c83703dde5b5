"""Staff sessions: an authenticator app before patient data (STAFF_MFA_REQUIRED), and times shown in
the staff member's own time zone."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone

# Paths that show or change patient data for a signed-in session. Sign-in, sign-out and the MFA
# pages themselves live under /accounts/ and stay reachable, so the user can enrol.
PROTECTED_PREFIXES = ("/console/", "/api/", "/admin/")


def _has_totp(user) -> bool:
    from allauth.mfa.models import Authenticator

    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


class StaffMfaRequiredMiddleware:
    """Redirect a signed-in staff user without an active TOTP authenticator to its activation page.

    Only session requests are concerned: API-key clients are authenticated by DRF later and are
    anonymous here. An htmx request gets an `HX-Redirect` so the whole page moves, not a fragment.
    Place after AuthenticationMiddleware and django_htmx's HtmxMiddleware.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if getattr(settings, "STAFF_MFA_REQUIRED", False) and self._must_enrol(request):
            target = reverse("mfa_activate_totp")
            if getattr(request, "htmx", False):
                from django_htmx.http import HttpResponseClientRedirect

                return HttpResponseClientRedirect(target)
            return redirect(target)
        return self.get_response(request)

    @staticmethod
    def _must_enrol(request) -> bool:
        if not request.path.startswith(PROTECTED_PREFIXES):
            return False
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not getattr(user, "is_clinic_staff", False):
            return False
        return not _has_totp(user)


class StaffTimeZoneMiddleware:
    """Console pages show times in the zone of the staff member's sites (`staff_time_zone`), not
    the server's: a Warsaw desk reads Warsaw times. Patient 360 still shows the patient's zone.
    Place after AuthenticationMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not getattr(user, "is_clinic_staff", False):
            return self.get_response(request)
        from clinics.selectors import staff_time_zone

        timezone.activate(staff_time_zone(user))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
