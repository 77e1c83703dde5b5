from allauth.account.adapter import DefaultAccountAdapter
from django.urls import reverse


class AccountAdapter(DefaultAccountAdapter):
    """Nobody signs up: staff are created by an admin, patients by the clinic."""

    def is_open_for_signup(self, request):
        return False

    def get_login_redirect_url(self, request):
        user = request.user
        if getattr(user, "is_clinic_staff", False):
            return reverse("console:home")
        return reverse("portal:home")
