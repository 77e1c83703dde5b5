"""REST resources of messaging: send a message, read messages (with attempts) and conversations.

Sending honours `Idempotency-Key` durably: the key becomes the message's own idempotency key
(namespaced by caller) and a fingerprint of the request is stored with it, so a retry returns the
same message even after the cache is gone, and the same key with another request is a 409.
"""

from __future__ import annotations

import datetime as dt
import uuid

import django_filters
from django.db import transaction
from django.utils.translation import gettext as _
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from clinics.api import (
    ID_REGEX,
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_PARAMETER,
    ApiDefaults,
    AwareDateTimeField,
    AwareDateTimeFilter,
    IdFilter,
    error_responses,
    fingerprint,
    principal_id,
    request_user,
)
from config.errors import DomainError
from consent.models import Purpose
from consent.services import access_log_record, access_log_record_many
from messaging.models import Conversation, Direction, Message, MessageAttempt, MessageStatus
from messaging.selectors import conversations_visible_to, messages_visible_to, scope_q
from messaging.services import message_send
from patients.models import Channel
from patients.selectors import patient_get_for


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = MessageAttempt
        fields = ["number", "channel", "provider", "mode", "started_at", "finished_at", "outcome", "error_code",
                  "error_message", "provider_id"]


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = ["id", "conversation", "patient", "direction", "channel", "purpose", "urgent", "template", "language",
                  "subject", "body", "to_address", "status", "error_code", "error_message", "routing", "not_before",
                  "attempt_count", "created_at", "sent_at", "delivered_at", "read_at", "failed_at", "received_at"]
        read_only_fields = fields


class MessageDetailSerializer(MessageSerializer):
    attempts = AttemptSerializer(many=True, read_only=True)

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "attempts"]
        read_only_fields = fields


class SendSerializer(serializers.Serializer):
    patient = serializers.IntegerField(min_value=1)
    template = serializers.SlugField(max_length=80)
    purpose = serializers.ChoiceField(choices=Purpose.choices)
    context = serializers.DictField(child=serializers.CharField(max_length=1000, allow_blank=True), required=False,
                                    default=dict)
    channel = serializers.ChoiceField(choices=Channel.choices, required=False, allow_null=True, default=None)
    not_before = AwareDateTimeField(required=False, allow_null=True, default=None)
    urgent = serializers.BooleanField(required=False, default=False)


MAX_IDEMPOTENCY_KEY = 150  # the namespaced key must fit Message.idempotency_key (200)


def _send_fingerprint(v: dict) -> str:
    """clinics.api's fingerprint of the validated body: defaults filled in and `not_before` in UTC,
    so the same request spelled another way (key order, `"urgent": false`, another offset) matches."""
    not_before = v["not_before"].astimezone(dt.UTC).isoformat() if v["not_before"] else None
    return fingerprint({**v, "not_before": not_before})


def _idempotency_conflict() -> DomainError:
    return DomainError(_("This Idempotency-Key was already used with a different request body."),
                       field=IDEMPOTENCY_HEADER, status=409, code="idempotency_conflict")


class MessageFilter(django_filters.FilterSet):
    patient = IdFilter(field_name="patient_id")
    status = django_filters.ChoiceFilter(choices=MessageStatus.choices)
    channel = django_filters.ChoiceFilter(choices=Channel.choices)
    direction = django_filters.ChoiceFilter(choices=Direction.choices)
    site = IdFilter(method="filter_site", help_text="The site that sees the message: the patient's current "
                    "home site (for an unidentified sender, the site written to).")
    created_after = AwareDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = AwareDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Message
        fields = ["patient", "status", "channel", "direction", "site"]

    def filter_site(self, queryset, name, value):
        return queryset.filter(scope_q([value], "conversation__"))


class MessageViewSet(ApiDefaults, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Messages of the conversations of the sites the caller may see."""

    queryset = Message.objects.none()
    serializer_class = MessageSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = MessageFilter
    lookup_value_regex = ID_REGEX

    def get_queryset(self):
        return messages_visible_to(self.request.user).order_by("-created_at", "-id")

    def get_serializer_class(self):
        return MessageDetailSerializer if self.action == "retrieve" else MessageSerializer

    @extend_schema(description="Messages, newest first. Writes an access-log row (`messages`) for each patient "
                   "whose messages are on the page.")
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset().select_related("patient")))
        access_log_record_many(patients=[m.patient for m in page if m.patient_id], what="messages",
                               actor=request.user, request=request)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(responses={200: MessageDetailSerializer, **error_responses(401, 403, 404)},
                   description="A message with its delivery attempts. Writes an access-log row (`message`).")
    def retrieve(self, request, *args, **kwargs):
        message = self.get_object()
        if message.patient_id:
            access_log_record(patient=message.patient, what="message", actor=request.user, request=request)
        return Response(MessageDetailSerializer(message).data)

    @extend_schema(
        request=SendSerializer, parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: MessageDetailSerializer, **error_responses(400, 401, 403, 404, 409)},
        description="Queue a message through the outbound pipeline (consent, quiet hours, channel choice). "
        "Repeating the request with the same `Idempotency-Key` and body answers 201 again with the same message "
        "(header `Idempotent-Replayed: true`), never a second one; the same key with any other field is a 409.",
    )
    def create(self, request, *args, **kwargs):
        raw = request.headers.get(IDEMPOTENCY_HEADER)
        if raw is not None:
            raw = raw.strip()
            if not raw or len(raw) > MAX_IDEMPOTENCY_KEY:
                raise DomainError(_("Idempotency-Key must be 1 to %(n)d characters.") % {"n": MAX_IDEMPOTENCY_KEY},
                                  field=IDEMPOTENCY_HEADER)
        data = SendSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        patient = patient_get_for(request.user, v["patient"])
        request_fingerprint = _send_fingerprint(v)
        key = f"api:{principal_id(request.user)}:{raw or uuid.uuid4().hex}"
        prior = Message.objects.filter(idempotency_key=key).first()
        if prior is not None:
            if prior.request_fingerprint != request_fingerprint:
                raise _idempotency_conflict()
            return self._replayed(prior)
        try:
            with transaction.atomic():
                message = message_send(
                    patient=patient, purpose=v["purpose"], template=v["template"], context=v["context"],
                    idempotency_key=key, channel=v["channel"], not_before=v["not_before"], urgent=v["urgent"],
                    actor=request_user(request), request_fingerprint=request_fingerprint,
                )
        except DomainError as exc:
            # A concurrent request queued this key first, for another patient or another body.
            if exc.field == "idempotency_key" and exc.status == 409:
                raise _idempotency_conflict() from exc
            raise
        return Response(MessageDetailSerializer(message).data, status=status.HTTP_201_CREATED)

    @staticmethod
    def _replayed(message: Message) -> Response:
        """The first answer again: 201 with the message (as it is now)."""
        response = Response(MessageDetailSerializer(message).data, status=status.HTTP_201_CREATED)
        response["Idempotent-Replayed"] = "true"
        return response


class ConversationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Conversation
        fields = ["id", "patient", "site", "address", "last_message_at", "last_inbound_at",
                  "whatsapp_window_ends_at", "needs_attention", "flow"]
        read_only_fields = fields


class ConversationDetailSerializer(ConversationSerializer):
    messages = serializers.SerializerMethodField()

    class Meta(ConversationSerializer.Meta):
        fields = [*ConversationSerializer.Meta.fields, "messages"]
        read_only_fields = fields

    def get_messages(self, conv) -> list[dict]:
        rows = conv.messages.order_by("-created_at", "-id")[:100]
        return MessageSerializer(rows, many=True).data


class ConversationFilter(django_filters.FilterSet):
    patient = IdFilter(field_name="patient_id")
    needs_attention = django_filters.BooleanFilter()
    site = IdFilter(method="filter_site", help_text="The site that sees the conversation: the patient's current "
                    "home site (for an unidentified sender, the site written to).")

    class Meta:
        model = Conversation
        fields = ["patient", "needs_attention", "site"]

    def filter_site(self, queryset, name, value):
        return queryset.filter(scope_q([value]))


class ConversationViewSet(ApiDefaults, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """One conversation per patient across channels (the latest 100 messages in the detail)."""

    queryset = Conversation.objects.none()
    serializer_class = ConversationSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = ConversationFilter
    lookup_value_regex = ID_REGEX

    def get_queryset(self):
        return conversations_visible_to(self.request.user).order_by("-last_message_at", "-id")

    @extend_schema(responses={200: ConversationDetailSerializer, **error_responses(401, 403, 404)},
                   description="Writes an access-log row (`conversation`) when the conversation has a patient.")
    def retrieve(self, request, *args, **kwargs):
        conv = self.get_object()
        if conv.patient_id:
            access_log_record(patient=conv.patient, what="conversation", actor=request.user, request=request)
        return Response(ConversationDetailSerializer(conv).data)
