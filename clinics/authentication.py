"""`Authorization: Api-Key <prefix>.<secret>` (or `X-Api-Key: …`) for integrators."""

from django.utils.translation import gettext as _
from rest_framework import authentication, exceptions

from clinics.selectors import api_key_find
from clinics.services import api_key_touch


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        raw = None
        if header.startswith(self.keyword + " "):
            raw = header[len(self.keyword) + 1 :]
        elif "HTTP_X_API_KEY" in request.META:
            raw = request.META["HTTP_X_API_KEY"]
        if raw is None:
            return None
        key = api_key_find(raw)
        if key is None:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked API key."))
        api_key_touch(key=key)
        return key, key

    def authenticate_header(self, request):
        return self.keyword
