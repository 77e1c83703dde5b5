"""REST plumbing every app's API shares: who is calling, pagination, throttling, the Api-Key
OpenAPI scheme, the error body in the schema, idempotent POSTs (`Idempotency-Key`), and the input
fields every resource parses the same way (date-times with an offset, bounded ids).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import time
from collections.abc import Callable

import django_filters
from django import forms
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.encoding import force_str
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import ISO_8601, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.utils import humanize_datetime
from rest_framework.utils.encoders import JSONEncoder

from clinics.models import ApiKey, User
from config.api_errors import flat_errors
from config.errors import DomainError

# Largest id PostgreSQL's bigint holds; bigger numbers in a URL or body are a 404/400, never a 500.
MAX_ID = 2**63 - 1
ID_REGEX = "[0-9]{1,18}"


# --- Who is calling ---------------------------------------------------------------------------


def request_user(request) -> User | None:
    """The staff user behind the request, or None when an API key is calling."""
    return request.user if isinstance(request.user, User) else None


def request_api_key(request) -> ApiKey | None:
    return request.user if isinstance(request.user, ApiKey) else None


def principal_id(actor: User | ApiKey) -> str:
    """A stable name for the caller (keys by their prefix, which is never reused)."""
    if isinstance(actor, ApiKey):
        return f"key:{actor.prefix}"
    return f"user:{actor.pk}"


# --- Pagination, throttling -------------------------------------------------------------------


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 200


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Per-key request rate (`API_RATE_LIMIT`); staff sessions are not throttled here."""

    scope = "api_key"

    def get_cache_key(self, request, view):
        key = request_api_key(request)
        if key is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": key.prefix}


class ApiDefaults:
    """Pagination and per-key throttling shared by every API viewset."""

    pagination_class = Pagination
    throttle_classes = [ApiKeyRateThrottle]


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "clinics.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <prefix>.<secret>` (or the `X-Api-Key` header). "
            "Create one with `manage.py create_api_key`.",
        }


# --- Errors in the schema ---------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    """Every error: {"errors": {field: [reason, …]}, "status": N} (see config/api_errors.py)."""

    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    status = serializers.IntegerField()


def validated(serializer: serializers.Serializer) -> dict:
    """`serializer.validated_data`, or a 400 whose `errors` name each field (see flat_errors)."""
    if not serializer.is_valid():
        raise serializers.ValidationError(flat_errors(serializer.errors))
    return serializer.validated_data


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    described = {
        400: "Invalid input; `errors` names each field.",
        401: "No or invalid credentials.",
        403: "Not allowed (e.g. a read-only API key writing).",
        404: "Not found, or outside the sites you may see.",
        409: "Conflict (e.g. `Idempotency-Key` reused with another body, or the record was merged).",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=described.get(code, "")) for code in codes}


# --- Idempotent POSTs -------------------------------------------------------------------------

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_TTL = 24 * 3600
# How long a duplicate waits for the first request to finish before answering 409.
IDEMPOTENCY_WAIT_SECONDS = 5.0
IDEMPOTENCY_LOCK_SECONDS = 60
_MAX_KEY_LENGTH = 255

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER, OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Any unique string (e.g. a UUID). Retrying with the same key and body replays the first "
    "response instead of creating a second record; the same key with another body is a 409. Kept 24 hours.",
)


def fingerprint(data) -> str:
    """A hash of a request body that ignores key order: same body, same fingerprint."""
    if hasattr(data, "lists"):  # a QueryDict from a form post
        data = dict(data.lists())
    body = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def _plain(data):
    """The response body as plain JSON types, so any cache backend can store it."""
    return json.loads(json.dumps(data, cls=JSONEncoder))


def _replay(stored: dict, body_hash: str) -> Response:
    if stored["fingerprint"] != body_hash:
        raise DomainError(
            _("This Idempotency-Key was already used with a different request body."),
            field=IDEMPOTENCY_HEADER, status=409, code="idempotency_conflict",
        )
    response = Response(stored["data"], status=stored["status"], headers=stored.get("headers") or {})
    response["Idempotent-Replayed"] = "true"
    return response


def idempotency_cache_key(request, raw_key: str) -> str:
    scope = "\n".join([principal_id(request.user), request.method, request.path, raw_key])
    return "idempotency:" + hashlib.sha256(scope.encode()).hexdigest()


def idempotent_response(request, call: Callable[[], Response]) -> Response:
    """Run `call` at most once per (caller, method, path, Idempotency-Key) within 24 hours.

    A repeat with the same body gets the first successful response replayed (header
    `Idempotent-Replayed: true`); with another body, a 409 naming `Idempotency-Key`. A duplicate
    that arrives while the first is still running waits for it (then replays) or, after
    IDEMPOTENCY_WAIT_SECONDS, gets a 409. Errors are not stored: nothing was created, so a retry
    simply runs again. Call after authentication (the caller is part of the key).
    """
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return call()
    raw = raw.strip()
    if not raw or len(raw) > _MAX_KEY_LENGTH:
        raise DomainError(
            _("Idempotency-Key must be 1 to %(n)d characters.") % {"n": _MAX_KEY_LENGTH}, field=IDEMPOTENCY_HEADER
        )
    body_hash = fingerprint(request.data)
    result_key = idempotency_cache_key(request, raw)
    lock_key = result_key + ":lock"

    stored = cache.get(result_key)
    if stored is not None:
        return _replay(stored, body_hash)
    deadline = time.monotonic() + IDEMPOTENCY_WAIT_SECONDS
    while not cache.add(lock_key, body_hash, IDEMPOTENCY_LOCK_SECONDS):
        stored = cache.get(result_key)
        if stored is not None:
            return _replay(stored, body_hash)
        if time.monotonic() >= deadline:
            raise DomainError(
                _("A request with this Idempotency-Key is still being processed; retry later."),
                field=IDEMPOTENCY_HEADER, status=409, code="idempotency_in_progress",
            )
        time.sleep(0.05)
    try:
        # The first request may have finished between our read and taking the lock.
        stored = cache.get(result_key)
        if stored is not None:
            return _replay(stored, body_hash)
        response = call()
        if 200 <= response.status_code < 300:
            headers = {name: response[name] for name in ("Location",) if response.has_header(name)}
            cache.set(
                result_key,
                {"fingerprint": body_hash, "status": response.status_code, "data": _plain(response.data),
                 "headers": headers},
                IDEMPOTENCY_TTL,
            )
        return response
    finally:
        cache.delete(lock_key)


def idempotent(view_method):
    """Decorate a viewset method (or @action) so it honours the `Idempotency-Key` header."""

    @functools.wraps(view_method)
    def wrapper(self, request, *args, **kwargs):
        return idempotent_response(request, lambda: view_method(self, request, *args, **kwargs))

    return wrapper


# --- Date-times given to the API ---------------------------------------------------------------

# A time without an offset would be read in the server's zone, which the caller cannot see.
NAIVE_DATETIME_MESSAGE = gettext_lazy(
    "Give a UTC offset, e.g. 2026-03-10T09:30:00Z or 2026-03-10T10:30:00+01:00."
)
OUT_OF_RANGE_MESSAGE = serializers.DateTimeField.default_error_messages["overflow"]
AWARE_DATETIME_HELP = gettext_lazy("ISO 8601 with a UTC offset, e.g. 2026-03-10T09:30:00Z.")
# A day inside Python's limits, so the value can be shown in any time zone without overflowing.
EARLIEST_DATETIME = dt.datetime.min.replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
LATEST_DATETIME = dt.datetime.max.replace(tzinfo=dt.UTC) - dt.timedelta(days=1)


def aware_datetime_problem(value: dt.datetime) -> str | None:
    """Why `value` is not an acceptable API date-time: "naive", "overflow", or None when it is."""
    if timezone.is_naive(value):
        return "naive"
    if not EARLIEST_DATETIME <= value <= LATEST_DATETIME:
        return "overflow"
    return None


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 date-time with an explicit UTC offset (`Z` or `+01:00`); anything else is a 400."""

    default_error_messages = {"naive": NAIVE_DATETIME_MESSAGE, "overflow": OUT_OF_RANGE_MESSAGE}

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", AWARE_DATETIME_HELP)
        super().__init__(**kwargs)

    def to_internal_value(self, value):
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            self.fail("date")
        if isinstance(value, str):
            try:
                value = parse_datetime(value.strip())
            except ValueError:  # well-formed but impossible, e.g. month 13
                value = None
        if not isinstance(value, dt.datetime):
            self.fail("invalid", format=humanize_datetime.datetime_formats([ISO_8601]))
        problem = aware_datetime_problem(value)
        if problem:
            self.fail(problem)
        return self.enforce_timezone(value)


class AwareIsoDateTimeFormField(forms.DateTimeField):
    default_error_messages = {"naive": NAIVE_DATETIME_MESSAGE, "overflow": OUT_OF_RANGE_MESSAGE}

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            parsed = parse_datetime(force_str(value).strip())
        except ValueError:  # well-formed but impossible, e.g. month 13
            parsed = None
        if parsed is None:
            raise DjangoValidationError(self.error_messages["invalid"], code="invalid")
        problem = aware_datetime_problem(parsed)
        if problem:
            raise DjangoValidationError(self.error_messages[problem], code=problem)
        return parsed


@extend_schema_field(OpenApiTypes.DATETIME)
class AwareDateTimeFilter(django_filters.IsoDateTimeFilter):
    """A query-string date-time with an explicit UTC offset; naive or out-of-range values are a 400."""

    field_class = AwareIsoDateTimeFormField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("help_text", AWARE_DATETIME_HELP)
        super().__init__(*args, **kwargs)


# --- Query-string ids ------------------------------------------------------------------------

class IdFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)
