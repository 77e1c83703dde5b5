"""DRF exception handler: every error is JSON {"errors": {field: [reason, …]}, "status": N}."""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import DomainError


def flat_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    """Errors as {"contact_points[0].value": [...]}: list items and int-keyed dicts (DRF's per-item
    errors) both become `[i]`, so a field is named the same way wherever it nests."""
    if isinstance(detail, dict):
        items = detail.items()
    elif isinstance(detail, list) and any(isinstance(d, dict | list) for d in detail):
        items = enumerate(detail)
    else:
        messages = detail if isinstance(detail, list) else [detail]
        return {prefix or "non_field_errors": [str(m) for m in messages]} if messages else {}
    out: dict[str, list[str]] = {}
    for key, value in items:
        name = f"{prefix}[{key}]" if isinstance(key, int) else (f"{prefix}.{key}" if prefix else str(key))
        out.update(flat_errors(value, name))
    return out


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = DomainError.from_django(exc)
    if isinstance(exc, DomainError):
        from rest_framework.response import Response

        return Response({"errors": exc.as_dict(), "status": exc.status}, status=exc.status)
    # DRF turns Django's Http404/PermissionDenied into its own; the body comes from response.data.
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = flat_errors(exc.detail)
    else:
        data = response.data
        detail = data.get("detail", data) if isinstance(data, dict) else data
        errors = {"detail": [str(detail)]}
    response.data = {"errors": errors, "status": response.status_code}
    return response
