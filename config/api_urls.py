"""REST API v1: each domain app contributes its viewsets to one router."""

from django.http import JsonResponse
from django.urls import re_path
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import NotFound
from rest_framework.routers import DefaultRouter

from clinics.api import ID_REGEX
from consent.api import AccessLogViewSet, ConsentViewSet
from messaging.api import ConversationViewSet, MessageViewSet
from patients.api import ContactPointViewSet, PatientViewSet

router = DefaultRouter()
router.register("patients", PatientViewSet, basename="patient")
router.register(rf"patients/(?P<patient_pk>{ID_REGEX})/contact-points", ContactPointViewSet,
                basename="patient-contact-point")
router.register(rf"patients/(?P<patient_pk>{ID_REGEX})/consents", ConsentViewSet, basename="patient-consent")
router.register(rf"patients/(?P<patient_pk>{ID_REGEX})/access-log", AccessLogViewSet, basename="patient-access-log")
router.register("messages", MessageViewSet, basename="message")
router.register("conversations", ConversationViewSet, basename="conversation")


@csrf_exempt
def not_found(request, *args, **kwargs):
    """Any address under /api/v1/ that no route takes: the API's JSON error body, not an HTML page.

    The same body as a 404 from a view (see config/api_errors.py), so "no such route" and
    "no such record" look alike to a client.
    """
    return JsonResponse({"errors": {"detail": [str(NotFound.default_detail)]}, "status": 404}, status=404)


urlpatterns = [
    *router.urls,
    # Last, and only for paths ending in "/": a path without its slash still 404s in the resolver, so
    # CommonMiddleware's APPEND_SLASH redirect keeps working (/api/v1/patients -> /api/v1/patients/;
    # an unknown one lands here after the redirect). config/urls.py mounts schema/, docs/ and redoc/
    # under the same prefix after this module, so those three are left to it.
    re_path(r"^(?!(?:schema|docs|redoc)/$).*/$", not_found),
]
