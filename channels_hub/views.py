"""Provider webhooks. Each checks the provider's signature (403 otherwise), stores the raw event
and answers at once; the event is processed by a worker (channels_hub.tasks)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from channels_hub.credentials import twilio_token_for_account_sid
from channels_hub.inbound import inbound_event_store
from channels_hub.models import InboundKind

log = logging.getLogger(__name__)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _twilio_verified(request) -> bool:
    """X-Twilio-Signature over the public URL Twilio called (PUBLIC_BASE_URL + path + query).

    Behind a proxy the Host and scheme Django sees are not what Twilio signed, so the configured
    public base URL is used, never the request's own.
    """
    signature = request.headers.get("X-Twilio-Signature", "")
    token = twilio_token_for_account_sid(request.POST.get("AccountSid", ""))
    if not signature or not token:
        return False
    url = settings.PUBLIC_BASE_URL + request.get_full_path()
    return RequestValidator(token).validate(url, request.POST, signature)


@csrf_exempt
@require_POST
def twilio_messages(request):
    if not _twilio_verified(request):
        log.warning("twilio message webhook with a bad signature from %s", request.META.get("REMOTE_ADDR"))
        return HttpResponseForbidden("invalid signature")
    sid = request.POST.get("MessageSid") or request.POST.get("SmsMessageSid") or ""
    if not sid:
        return HttpResponse("MessageSid is required", status=400)
    inbound_event_store(provider="twilio", kind=InboundKind.MESSAGE, external_id=sid, status="received",
                        payload=request.POST.dict())
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


@csrf_exempt
@require_POST
def twilio_status(request):
    if not _twilio_verified(request):
        log.warning("twilio status webhook with a bad signature from %s", request.META.get("REMOTE_ADDR"))
        return HttpResponseForbidden("invalid signature")
    sid = request.POST.get("MessageSid") or request.POST.get("SmsSid") or ""
    status = request.POST.get("MessageStatus") or request.POST.get("SmsStatus") or ""
    if not sid or not status:
        return HttpResponse("MessageSid and MessageStatus are required", status=400)
    payload = request.POST.dict()
    payload["_ref"] = request.GET.get("ref", "")
    inbound_event_store(provider="twilio", kind=InboundKind.STATUS, external_id=sid, status=status, payload=payload)
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")
