"""REST resources of the consent ledger and the access log, under /patients/{patient_pk}/."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from clinics.api import (
    IDEMPOTENCY_PARAMETER,
    ApiDefaults,
    AwareDateTimeField,
    error_responses,
    idempotent,
    request_api_key,
    request_user,
    validated,
)
from consent.models import AccessLog, ConsentEvent, ConsentSource, Purpose
from consent.selectors import access_log_for, consent_events, consent_matrix
from consent.services import access_log_record, client_ip, consent_grant, consent_revoke
from patients.api import PATIENT_PK_PARAMETER, PatientScopedMixin
from patients.models import Channel


class ConsentEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConsentEvent
        fields = [
            "id", "channel", "purpose", "action", "source", "wording_version", "wording_text", "actor_label", "api_key",
            "at", "recorded_at", "ip_address", "note", "copied_from",
        ]
        read_only_fields = fields


class ConsentStateSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    purpose = serializers.ChoiceField(choices=Purpose.choices)
    granted = serializers.BooleanField(allow_null=True, help_text=gettext_lazy("null: the patient never said."))
    since = serializers.DateTimeField(allow_null=True)
    source = serializers.CharField(allow_null=True)
    event = serializers.IntegerField(allow_null=True, help_text=gettext_lazy("The ledger event that decides it."))


@extend_schema_serializer(many=False)
class ConsentOverviewSerializer(serializers.Serializer):
    current = ConsentStateSerializer(many=True)
    history = ConsentEventSerializer(many=True)


class ConsentChangeSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    purpose = serializers.ChoiceField(choices=Purpose.choices)
    wording_version = serializers.CharField(
        max_length=50, required=False, allow_blank=True,
        help_text=gettext_lazy("The wording the patient was shown (default: the current one)."),
    )
    note = serializers.CharField(max_length=300, required=False, allow_blank=True)
    at = AwareDateTimeField(
        required=False, help_text=gettext_lazy("When the patient said it (default: now); never in the future.")
    )


class AccessLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = AccessLog
        fields = ["id", "at", "what", "actor_label", "actor", "api_key", "ip_address", "path"]
        read_only_fields = fields


@extend_schema(tags=["consent"], parameters=[PATIENT_PK_PARAMETER])
class ConsentViewSet(ApiDefaults, PatientScopedMixin, viewsets.GenericViewSet):
    """The patient's consent per channel and purpose, and the ledger it is derived from."""

    serializer_class = ConsentEventSerializer
    pagination_class = None
    filter_backends: list = []

    def get_queryset(self):
        patient = self.scoped_patient()
        return ConsentEvent.objects.none() if patient is None else consent_events(patient)

    @extend_schema(
        description="Current state of every channel x purpose, and the full ledger, newest first. "
        "Writes an access-log row (`consents`).",
        responses={200: ConsentOverviewSerializer, **error_responses(401, 403, 404)},
    )
    def list(self, request, *args, **kwargs):
        access_log_record(patient=self.patient, what="consents", actor=request.user, request=request)
        current = [
            {
                "channel": s.channel, "purpose": s.purpose, "granted": s.granted,
                "since": s.event.at if s.event else None, "source": s.event.source if s.event else None,
                "event": s.event.pk if s.event else None,
            }
            for s in consent_matrix(self.patient)
        ]
        return Response(ConsentOverviewSerializer({"current": current, "history": self.get_queryset()}).data)

    def _change(self, request, record) -> Response:
        body = validated(ConsentChangeSerializer(data=request.data))
        with transaction.atomic():
            event = record(
                patient=self.patient, source=ConsentSource.API, actor=request_user(request),
                api_key=request_api_key(request), ip_address=client_ip(request), **body,
            )
        return Response(ConsentEventSerializer(event).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=ConsentChangeSerializer, parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: ConsentEventSerializer, **error_responses(400, 401, 403, 404, 409)},
    )
    @action(detail=False, methods=["post"])
    @idempotent
    def grant(self, request, patient_pk=None):
        return self._change(request, consent_grant)

    @extend_schema(
        request=ConsentChangeSerializer, parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: ConsentEventSerializer, **error_responses(400, 401, 403, 404, 409)},
    )
    @action(detail=False, methods=["post"])
    @idempotent
    def revoke(self, request, patient_pk=None):
        return self._change(request, consent_revoke)


@extend_schema(tags=["consent"], parameters=[PATIENT_PK_PARAMETER])
class AccessLogViewSet(ApiDefaults, PatientScopedMixin, viewsets.GenericViewSet):
    """Who read the patient's record. Reading it is itself logged (`access_log`)."""

    serializer_class = AccessLogSerializer
    filter_backends: list = []

    def get_queryset(self):
        patient = self.scoped_patient()
        return AccessLog.objects.none() if patient is None else access_log_for(patient)

    @extend_schema(responses={200: AccessLogSerializer(many=True), **error_responses(401, 403, 404)})
    def list(self, request, *args, **kwargs):
        access_log_record(patient=self.patient, what="access_log", actor=request.user, request=request)
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
