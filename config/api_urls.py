"""REST API v1: each domain app contributes its viewsets to one router."""

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

urlpatterns = router.urls
