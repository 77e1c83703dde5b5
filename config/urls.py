from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.http import Http404
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

# The admin signs in through allauth too, so its rate limits and the TOTP step apply there as well.
admin.site.login = secure_admin_login(admin.site.login)


def email_managed_by_the_clinic(request, *args, **kwargs):
    """allauth's page for adding and switching a user's email addresses, switched off.

    A portal account opens the records that hold its email address, so an account must never
    change its own address: patients' addresses are contact points the clinic keeps, staff
    addresses are set in the admin.
    """
    raise Http404

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="console:home", permanent=False)),
    path("admin/", admin.site.urls),
    path("accounts/email/", email_managed_by_the_clinic),
    path("accounts/", include("allauth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("console/", include("console.urls")),
    path("portal/", include("portal.urls")),
    path("hooks/", include("channels_hub.urls")),
    path("api/v1/", include("config.api_urls")),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
