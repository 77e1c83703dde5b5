"""REST resources of Patient 360: patients, their contact points, preferences, timeline, export.

Every query starts from `patients_visible_to(request.user)`: a patient outside the caller's sites
is a 404, never a 403. Every response that carries a patient's record (each patient on a list page,
and the record a write returns) writes an access-log row.
"""

from __future__ import annotations

from contextlib import contextmanager

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.http import Http404
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from clinics.api import (
    ID_REGEX,
    IDEMPOTENCY_PARAMETER,
    MAX_ID,
    ApiDefaults,
    IdFilter,
    error_responses,
    idempotent,
    request_user,
    validated,
)
from clinics.models import ApiKey, Language, Site
from clinics.selectors import site_ids_for, sites_for
from config.errors import DomainError
from consent.services import access_log_record, access_log_record_many
from patients.models import (
    ChangeSource,
    Channel,
    ContactKind,
    ContactPoint,
    Patient,
    PatientIdentifier,
    validate_channel_order,
)
from patients.selectors import (
    patient_duplicates,
    patient_export,
    patient_get_for,
    patient_search,
    patient_timeline,
    patients_visible_to,
)
from patients.services import (
    contact_point_add,
    contact_point_invalidate,
    contact_point_revalidate,
    contact_point_set_primary,
    patient_create,
    patient_merge,
    patient_update,
)

PATIENT_PK_PARAMETER = OpenApiParameter("patient_pk", OpenApiTypes.INT, OpenApiParameter.PATH,
                                        description="The patient's id.")


def ensure_writable(patient: Patient) -> None:
    if patient.is_merged:
        raise DomainError(_("This patient was merged into another record."), status=409, code="merged")


@contextmanager
def errors_under(prefix: str):
    """Re-key a service's field errors under `prefix` (e.g. `contact_points[1].value`)."""
    try:
        yield
    except DjangoValidationError as exc:
        errors = DomainError.from_django(exc).as_dict()
        raise _prefixed(errors, prefix, status.HTTP_400_BAD_REQUEST) from None
    except DomainError as exc:
        raise _prefixed(exc.as_dict(), prefix, exc.status) from None


def _prefixed(errors: dict[str, list[str]], prefix: str, status_code: int) -> DomainError:
    keyed = {f"{prefix}.{field}": messages for field, messages in errors.items()}
    field, messages = next(iter(keyed.items()))
    err = DomainError(messages[0], field=field, status=status_code)
    err.all_errors = keyed
    return err


# --- Serializers ------------------------------------------------------------------------------


class ContactPointSerializer(serializers.ModelSerializer):
    class Meta:
        model = ContactPoint
        fields = [
            "id", "kind", "value", "phone_type", "label", "is_primary", "is_verified", "is_valid", "invalid_reason",
            "invalidated_at", "created_at",
        ]
        read_only_fields = fields


class ContactPointInputSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ContactKind.choices)
    value = serializers.CharField(
        max_length=254, help_text=gettext_lazy("A phone number in any format (read in the home site's region), or an email.")
    )
    label = serializers.CharField(max_length=50, required=False, allow_blank=True)
    is_primary = serializers.BooleanField(default=False)
    is_verified = serializers.BooleanField(default=False)


# The same choice set as every `channel` field (component ChannelEnum): one enum in the schema,
# not a second copy named after this field.
@extend_schema_field({"type": "array", "items": {"$ref": "#/components/schemas/ChannelEnum"}})
class ChannelOrderField(serializers.ListField):
    child = serializers.ChoiceField(choices=Channel.choices)

    def __init__(self, **kwargs):
        kwargs.setdefault("validators", [validate_channel_order])
        kwargs.setdefault("help_text", gettext_lazy("Channels in the order to try them; each at most once."))
        super().__init__(**kwargs)


class PatientSerializer(serializers.ModelSerializer):
    preferred_channels = ChannelOrderField(read_only=True)
    mrn = serializers.SerializerMethodField()
    contact_points = ContactPointSerializer(many=True, read_only=True)

    class Meta:
        model = Patient
        fields = [
            "id", "home_site", "given_name", "family_name", "preferred_name", "date_of_birth", "sex",
            "gender_identity", "pronouns", "language", "time_zone", "preferred_channels", "quiet_hours_start",
            "quiet_hours_end", "notes", "merged_into", "mrn", "contact_points", "created_at", "updated_at",
        ]
        read_only_fields = fields

    def get_mrn(self, obj: Patient) -> str | None:
        # Iterates the prefetched identifiers: no query per patient.
        return next((i.value for i in obj.identifiers.all() if i.system == "mrn"), None)


class PatientSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = ["id", "home_site", "given_name", "family_name", "preferred_name", "date_of_birth"]
        read_only_fields = fields


# Profile and preference fields; lengths, choices and validators come from the model.
class _PatientWriteSerializer(serializers.ModelSerializer):
    home_site = serializers.PrimaryKeyRelatedField(queryset=Site.objects.none(), required=False)
    preferred_channels = ChannelOrderField(required=False)

    class Meta:
        model = Patient
        fields = [
            "home_site", "given_name", "family_name", "preferred_name", "date_of_birth", "sex", "gender_identity",
            "pronouns", "language", "time_zone", "preferred_channels", "quiet_hours_start", "quiet_hours_end", "notes",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            # A site outside the caller's scope reads as "does not exist", naming home_site.
            self.fields["home_site"].queryset = sites_for(request.user)


class PatientCreateSerializer(_PatientWriteSerializer):
    home_site = serializers.PrimaryKeyRelatedField(
        queryset=Site.objects.none(), required=False,
        help_text=gettext_lazy("One of your sites. May be left out only by an API key that has exactly one site."),
    )
    contact_points = ContactPointInputSerializer(many=True, required=False, max_length=20)
    mrn = serializers.CharField(max_length=100, required=False, allow_blank=True,
                                help_text=gettext_lazy("Medical record number in the EHR."))

    class Meta(_PatientWriteSerializer.Meta):
        fields = [*_PatientWriteSerializer.Meta.fields, "contact_points", "mrn"]

    def validate(self, attrs):
        if attrs.get("home_site") is None:
            request = self.context["request"]
            sites = list(self.fields["home_site"].queryset[:2])
            if isinstance(request.user, ApiKey) and len(sites) == 1:
                attrs["home_site"] = sites[0]
            else:
                raise serializers.ValidationError({"home_site": _("Choose the patient's home site among your sites.")})
        return attrs


class PatientUpdateSerializer(_PatientWriteSerializer):
    pass


class PreferencesSerializer(serializers.ModelSerializer):
    preferred_channels = ChannelOrderField(required=False)
    effective_time_zone = serializers.SerializerMethodField()

    class Meta:
        model = Patient
        fields = [
            "preferred_channels", "language", "quiet_hours_start", "quiet_hours_end", "time_zone", "effective_time_zone",
        ]

    def get_effective_time_zone(self, obj: Patient) -> str:
        return obj.time_zone or obj.home_site.time_zone


class TimelineEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    kind = serializers.CharField()
    title = serializers.CharField()
    detail = serializers.CharField()
    actor = serializers.CharField()
    extra = serializers.DictField()


class TimelineQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=500, default=100)
    kinds = serializers.CharField(required=False, max_length=200,
                                  help_text=gettext_lazy("Comma-separated kinds, e.g. `consent,profile`."))


class DuplicateSerializer(serializers.Serializer):
    patient = PatientSummarySerializer()
    reason = serializers.CharField()


class MergeInputSerializer(serializers.Serializer):
    loser = serializers.IntegerField(min_value=1, max_value=MAX_ID,
                                     help_text=gettext_lazy("The duplicate record to merge into this one."))


class MergeResultSerializer(serializers.Serializer):
    survivor = PatientSerializer()
    loser = serializers.IntegerField()
    moved = serializers.DictField(child=serializers.IntegerField())
    merged_at = serializers.DateTimeField()


class InvalidateSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=200)


# --- Filters ----------------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.INT)
class PatientFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        method="filter_q", max_length=200,
        help_text=gettext_lazy("Name, phone in any format, email, birth date or MRN."),
    )
    site = IdFilter(field_name="home_site_id", help_text=gettext_lazy("Home site id."))
    language = django_filters.ChoiceFilter(choices=Language.choices)
    date_of_birth = django_filters.DateFilter()
    mrn = django_filters.CharFilter(method="filter_mrn", max_length=100)
    include_merged = django_filters.BooleanFilter(
        method="filter_include_merged", help_text=gettext_lazy("Also list records merged into another (default: no).")
    )

    class Meta:
        model = Patient
        fields: list[str] = []

    def filter_q(self, queryset, name, value):
        return patient_search(queryset, value)

    def filter_mrn(self, queryset, name, value):
        ids = PatientIdentifier.objects.filter(system="mrn", value=value.strip()).values("patient_id")
        return queryset.filter(pk__in=ids)

    def filter_include_merged(self, queryset, name, value):
        return queryset  # applied in filter_queryset, where its default (no) is known

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("include_merged"):
            queryset = queryset.filter(merged_into__isnull=True)
        return queryset


# --- Views ------------------------------------------------------------------------------------


class PatientScopedMixin:
    """For routes under /patients/{patient_pk}/…: the patient is looked up after authentication
    and permission checks, through the caller's scope (404 outside it)."""

    patient: Patient

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.patient = patient_get_for(request.user, kwargs.get("patient_pk"))

    def scoped_patient(self) -> Patient | None:
        return getattr(self, "patient", None)


@extend_schema(tags=["patients"])
class PatientViewSet(
    ApiDefaults, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Patients of the sites the caller may see."""

    queryset = Patient.objects.none()
    serializer_class = PatientSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = PatientFilter
    lookup_value_regex = ID_REGEX

    def get_queryset(self):
        return (
            patients_visible_to(self.request.user, include_merged=True)
            .prefetch_related("contact_points", "identifiers")
            .order_by("family_name", "given_name", "id")
        )

    def filter_queryset(self, queryset):
        # Filters shape the list only; a detail URL always finds its (in-scope) patient.
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)

    def _read(self, request, what: str) -> Patient:
        patient = self.get_object()
        access_log_record(patient=patient, what=what, actor=request.user, request=request)
        return patient

    def _fresh(self, patient: Patient, request, what: str = "api_detail") -> Patient:
        """The record as it is now, for a write's response: returning it is a read, so it is logged."""
        patient = self.get_queryset().get(pk=patient.pk)
        access_log_record(patient=patient, what=what, actor=request.user, request=request)
        return patient

    @extend_schema(
        description="Writes an access-log row (`api_list`) for each patient on the page.",
        responses={200: PatientSerializer, **error_responses(400, 401, 403)},
    )
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        access_log_record_many(patients=page, what="api_list", actor=request.user, request=request)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        description="Writes an access-log row (`api_detail`).",
        responses={200: PatientSerializer, **error_responses(401, 403, 404)},
    )
    def retrieve(self, request, *args, **kwargs):
        patient = self._read(request, "api_detail")
        return Response(self.get_serializer(patient).data)

    @extend_schema(
        description="Create a patient with contact points (phones in any format, read in the home site's "
        "region) and an MRN. Nothing is stored unless all of it is valid. Writes an access-log row (`api_detail`).",
        request=PatientCreateSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: PatientSerializer, **error_responses(400, 401, 403, 409)},
    )
    @idempotent
    def create(self, request, *args, **kwargs):
        data = dict(validated(PatientCreateSerializer(data=request.data, context=self.get_serializer_context())))
        contact_points = data.pop("contact_points", [])
        mrn = data.pop("mrn", "")
        user = request_user(request)
        with transaction.atomic():
            patient = patient_create(actor=user, source=ChangeSource.API, mrn=mrn, **data)
            # One by one (as patient_create does), so an error names the contact point it is about.
            for i, cp in enumerate(contact_points):
                with errors_under(f"contact_points[{i}]"):
                    contact_point_add(patient=patient, actor=user, source=ChangeSource.API, record=False, **cp)
        location = reverse("patient-detail", kwargs={"pk": patient.pk})
        return Response(self.get_serializer(self._fresh(patient, request)).data, status=status.HTTP_201_CREATED,
                        headers={"Location": location})

    @extend_schema(
        description="Writes an access-log row (`api_detail`).",
        request=PatientUpdateSerializer,
        responses={200: PatientSerializer, **error_responses(400, 401, 403, 404, 409)},
    )
    def partial_update(self, request, *args, **kwargs):
        patient = self.get_object()
        data = validated(
            PatientUpdateSerializer(data=request.data, partial=True, context=self.get_serializer_context())
        )
        with transaction.atomic():
            patient_update(patient=patient, actor=request_user(request), source=ChangeSource.API, **data)
        return Response(self.get_serializer(self._fresh(patient, request)).data)

    @extend_schema(
        description="Everything held about the patient (GDPR art. 15/20). Writes an access-log row (`export`).",
        responses={200: OpenApiTypes.OBJECT, **error_responses(401, 403, 404)},
    )
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        patient = self._read(request, "export")
        return Response(patient_export(patient))

    @extend_schema(
        description="What happened to the patient, newest first. Writes an access-log row (`timeline`).",
        parameters=[TimelineQuerySerializer],
        responses={200: TimelineEntrySerializer(many=True), **error_responses(400, 401, 403, 404)},
    )
    @action(detail=True, methods=["get"])
    def timeline(self, request, pk=None):
        patient = self.get_object()
        query = validated(TimelineQuerySerializer(data=request.query_params))
        access_log_record(patient=patient, what="timeline", actor=request.user, request=request)
        kinds = query.get("kinds")
        entries = patient_timeline(
            patient, limit=query["limit"],
            kinds={k.strip() for k in kinds.split(",") if k.strip()} if kinds else None,
        )
        return Response(TimelineEntrySerializer(entries, many=True).data)

    @extend_schema(
        description="Likely duplicates among the patients you may see, each with why it matched.",
        responses={200: DuplicateSerializer(many=True), **error_responses(401, 403, 404)},
    )
    @action(detail=True, methods=["get"])
    def duplicates(self, request, pk=None):
        patient = self._read(request, "duplicates")
        visible = site_ids_for(request.user)
        found = [{"patient": p, "reason": reason} for p, reason in patient_duplicates(patient) if p.home_site_id in visible]
        return Response(DuplicateSerializer(found, many=True).data)

    @extend_schema(
        description="Merge the `loser` record into this one. Both must be among the patients you may see. "
        "Writes an access-log row (`api_detail`) for the survivor.",
        request=MergeInputSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={200: MergeResultSerializer, **error_responses(400, 401, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def merge(self, request, pk=None):
        survivor = self.get_object()
        body = validated(MergeInputSerializer(data=request.data))
        try:
            loser = patient_get_for(request.user, body["loser"])
        except Http404:
            raise DomainError(_("No such patient."), field="loser", status=404) from None
        with transaction.atomic():
            merge = patient_merge(survivor=survivor, loser=loser, actor=request_user(request))
        result = {"survivor": self._fresh(survivor, request), "loser": loser.pk, "moved": merge.moved, "merged_at": merge.at}
        return Response(MergeResultSerializer(result, context=self.get_serializer_context()).data)

    @extend_schema(
        methods=["GET"], description="Writes an access-log row (`preferences`).",
        responses={200: PreferencesSerializer, **error_responses(401, 403, 404)},
    )
    @extend_schema(
        methods=["PATCH"], request=PreferencesSerializer, description="Writes an access-log row (`preferences`).",
        responses={200: PreferencesSerializer, **error_responses(400, 401, 403, 404, 409)},
    )
    @action(detail=True, methods=["get", "patch"])
    def preferences(self, request, pk=None):
        if request.method == "GET":
            return Response(PreferencesSerializer(self._read(request, "preferences")).data)
        patient = self.get_object()
        body = validated(PreferencesSerializer(data=request.data, partial=True))
        with transaction.atomic():
            patient_update(patient=patient, actor=request_user(request), source=ChangeSource.API, **body)
        return Response(PreferencesSerializer(self._fresh(patient, request, "preferences")).data)


@extend_schema(tags=["patients"], parameters=[PATIENT_PK_PARAMETER])
class ContactPointViewSet(ApiDefaults, PatientScopedMixin, viewsets.GenericViewSet):
    """How to reach one patient. Numbers that bounce are marked invalid, never deleted."""

    serializer_class = ContactPointSerializer
    pagination_class = None
    filter_backends: list = []
    lookup_value_regex = ID_REGEX

    def get_queryset(self):
        patient = self.scoped_patient()
        if patient is None:  # schema generation
            return ContactPoint.objects.none()
        return ContactPoint.objects.filter(patient=patient)

    def get_object(self):
        cp = super().get_object()
        cp.patient = self.patient  # the services read it; saves a query
        return cp

    def _done(self, cp: ContactPoint, code=status.HTTP_200_OK) -> Response:
        return Response(self.get_serializer(ContactPoint.objects.get(pk=cp.pk)).data, status=code)

    @extend_schema(
        description="Writes an access-log row (`contact_points`).",
        responses={200: ContactPointSerializer(many=True), **error_responses(401, 403, 404)},
    )
    def list(self, request, *args, **kwargs):
        access_log_record(patient=self.patient, what="contact_points", actor=request.user, request=request)
        return Response(self.get_serializer(self.get_queryset(), many=True).data)

    @extend_schema(
        request=ContactPointInputSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: ContactPointSerializer, **error_responses(400, 401, 403, 404, 409)},
    )
    @idempotent
    def create(self, request, *args, **kwargs):
        ensure_writable(self.patient)
        body = validated(ContactPointInputSerializer(data=request.data))
        with transaction.atomic():
            cp = contact_point_add(patient=self.patient, actor=request_user(request), source=ChangeSource.API, **body)
        return self._done(cp, status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: ContactPointSerializer, **error_responses(401, 403, 404, 409)})
    @action(detail=True, methods=["post"], url_path="set-primary")
    def set_primary(self, request, patient_pk=None, pk=None):
        ensure_writable(self.patient)
        cp = self.get_object()
        with transaction.atomic():
            contact_point_set_primary(contact_point=cp, actor=request_user(request), source=ChangeSource.API)
        return self._done(cp)

    @extend_schema(request=InvalidateSerializer,
                   responses={200: ContactPointSerializer, **error_responses(400, 401, 403, 404, 409)})
    @action(detail=True, methods=["post"])
    def invalidate(self, request, patient_pk=None, pk=None):
        ensure_writable(self.patient)
        cp = self.get_object()
        body = validated(InvalidateSerializer(data=request.data))
        with transaction.atomic():
            contact_point_invalidate(contact_point=cp, reason=body["reason"],
                                     actor=request_user(request), source=ChangeSource.API)
        return self._done(cp)

    @extend_schema(request=None, responses={200: ContactPointSerializer, **error_responses(401, 403, 404, 409)})
    @action(detail=True, methods=["post"])
    def revalidate(self, request, patient_pk=None, pk=None):
        ensure_writable(self.patient)
        cp = self.get_object()
        with transaction.atomic():
            contact_point_revalidate(contact_point=cp, actor=request_user(request), source=ChangeSource.API)
        return self._done(cp)
