"""Console pages of the messaging spine: message log, message detail, inbox, conversation, and the
sandbox 'patient device' (what a patient received, and answering as them through the real
inbound path)."""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from channels_hub.inbound import sandbox_reply
from channels_hub.models import ChannelAccount, SandboxMessage
from clinics.selectors import actor_can_write, sites_for
from config.errors import DomainError
from consent.services import access_log_record, access_log_record_many
from console.views import staff_required
from messaging.models import Direction, MessageStatus
from messaging.selectors import (
    conversation_thread,
    conversations_visible_to,
    inbox,
    messages_visible_to,
    scope_q,
)
from messaging.services import (
    conversation_link_patient,
    conversation_mark_handled,
    conversation_reply,
    conversations_for,
)
from patients.models import Channel
from patients.selectors import patient_get_for, patients_visible_to

PAGE_SIZE = 50


class MessageFilterForm(forms.Form):
    status = forms.ChoiceField(label=gettext_lazy("Status"), required=False,
                               choices=[("", gettext_lazy("Any status")), *MessageStatus.choices])
    channel = forms.ChoiceField(label=gettext_lazy("Channel"), required=False,
                                choices=[("", gettext_lazy("Any channel")), *Channel.choices])
    direction = forms.ChoiceField(label=gettext_lazy("Direction"), required=False,
                                  choices=[("", gettext_lazy("Both")), *Direction.choices])
    site = forms.ModelChoiceField(label=gettext_lazy("Site"), required=False, queryset=None,
                                  empty_label=gettext_lazy("All my sites"))
    date_from = forms.DateField(label=gettext_lazy("From"), required=False,
                                widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=gettext_lazy("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, sites, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["site"].queryset = sites

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_to", _("The end date is before the start date."))
        return data


@staff_required
@require_GET
def message_log(request):
    form = MessageFilterForm(request.GET or None, sites=sites_for(request.user))
    qs = messages_visible_to(request.user).select_related("patient", "conversation__site")
    if form.is_bound and form.is_valid():
        d = form.cleaned_data
        for name in ("status", "channel", "direction"):
            if d[name]:
                qs = qs.filter(**{name: d[name]})
        if d["site"] is not None:
            qs = qs.filter(scope_q([d["site"].pk], "conversation__"))  # the site that sees it, as scoping does
        if d["date_from"]:
            qs = qs.filter(created_at__date__gte=d["date_from"])
        if d["date_to"]:
            qs = qs.filter(created_at__date__lte=d["date_to"])
    page = Paginator(qs.order_by("-created_at", "-id"), PAGE_SIZE).get_page(request.GET.get("page"))
    # The page shows message bodies: a read of each listed patient's messages.
    access_log_record_many(patients=[m.patient for m in page if m.patient_id], what="messages",
                           actor=request.user, request=request)
    return render(request, "console/messaging/log.html", {"form": form, "page": page})


@staff_required
@require_GET
def message_detail(request, pk):
    message = get_object_or_404(
        messages_visible_to(request.user).select_related("patient", "conversation__site", "account"), pk=pk
    )
    if message.patient_id:
        access_log_record(patient=message.patient, what="message", actor=request.user, request=request)
    return render(request, "console/messaging/message.html",
                  {"message": message, "attempts": message.attempts.order_by("number")})


@staff_required
@require_GET
def inbox_view(request):
    page = Paginator(inbox(request.user), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "console/messaging/inbox.html", {"page": page})


@staff_required
@require_GET
def patient_conversation(request, pk):
    """The patient's one conversation (opened on first use), from Patient 360."""
    patient = patient_get_for(request.user, pk)
    if patient.is_merged:
        return redirect("console:patient", pk=patient.merged_into_id)
    conv = conversations_for([patient])[patient.pk]
    return redirect("console:conversation", pk=conv.pk)


class ReplyForm(forms.Form):
    text = forms.CharField(label=gettext_lazy("Reply"), max_length=1600, widget=forms.Textarea(attrs={"rows": 3}))
    channel = forms.ChoiceField(label=gettext_lazy("Channel"), required=False,
                                choices=[("", gettext_lazy("Where the patient last wrote")), *Channel.choices])
    token = forms.CharField(widget=forms.HiddenInput)


class LinkForm(forms.Form):
    patient = forms.IntegerField(label=gettext_lazy("Patient"), min_value=1)


@staff_required
@require_http_methods(["GET", "POST"])
def conversation_view(request, pk):
    conv = get_object_or_404(conversations_visible_to(request.user).select_related("patient", "site"), pk=pk)
    if conv.patient_id:
        access_log_record(patient=conv.patient, what="conversation", actor=request.user, request=request)
    can_write = actor_can_write(request.user)
    form = ReplyForm(initial={"token": uuid.uuid4().hex})
    if request.method == "POST":
        if not can_write:
            raise PermissionDenied
        action = request.POST.get("action", "reply")
        if action == "handled":
            conversation_mark_handled(conversation=conv)
            messages.success(request, _("Marked as handled."))
            return redirect("console:inbox")
        if action == "link":
            link = LinkForm(request.POST)
            if link.is_valid():
                patient = patient_get_for(request.user, link.cleaned_data["patient"])
                try:
                    target = conversation_link_patient(conversation=conv, patient=patient)
                except (ValidationError, DomainError) as exc:
                    messages.error(request, "; ".join(getattr(exc, "messages", [str(exc)])))
                    return redirect("console:conversation", pk=conv.pk)
                messages.success(request, _("Conversation linked to %(name)s.") % {"name": patient.full_name})
                return redirect("console:conversation", pk=target.pk)
        form = ReplyForm(request.POST)
        if form.is_valid():
            try:
                sent = conversation_reply(
                    conversation=conv, text=form.cleaned_data["text"], actor=request.user,
                    idempotency_key=f"console:{request.user.pk}:{form.cleaned_data['token']}",
                    channel=form.cleaned_data["channel"] or None,
                )
            except ValidationError as exc:
                for field, errs in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errs)
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                if sent.status == MessageStatus.FAILED:
                    messages.error(request, _("Not sent: %(why)s") % {"why": sent.error_message})
                else:
                    messages.success(request, _("Reply queued on %(channel)s.") % {"channel": sent.get_channel_display()})
                return redirect("console:conversation", pk=conv.pk)
    candidates = list(conv.candidate_patients.filter(pk__in=patients_visible_to(request.user).values("pk")))
    return render(request, "console/messaging/conversation.html", {
        "conv": conv, "thread": conversation_thread(conv), "form": form, "can_write": can_write,
        "candidates": candidates,
    })


class DeviceReplyForm(forms.Form):
    channel = forms.ChoiceField(label=gettext_lazy("Channel"), choices=Channel.choices)
    address = forms.CharField(label=gettext_lazy("Patient's number or email"), max_length=254)
    body = forms.CharField(label=gettext_lazy("Message"), max_length=1600, widget=forms.Textarea(attrs={"rows": 2}))


@staff_required
@require_GET
def sandbox_device(request):
    """What the sandbox 'delivered' to one patient address, per channel, newest last."""
    address = (request.GET.get("address") or "").strip().lower()
    patient = None
    if request.GET.get("patient"):
        patient = patient_get_for(request.user, request.GET["patient"])
        access_log_record(patient=patient, what="device", actor=request.user, request=request)
        cp = patient.contact_points.filter(is_valid=True).order_by("kind", "-is_primary").first()
        address = address or (cp.value if cp else "")
    site_ids = set(sites_for(request.user).values_list("pk", flat=True))
    senders = set(ChannelAccount.objects.filter(site_id__in=site_ids, provider="sandbox").values_list("sender", flat=True))
    received = list(SandboxMessage.objects.filter(to=address, sender__in=senders).order_by("created_at")[:200]) \
        if address else []
    recent = (SandboxMessage.objects.filter(sender__in=senders).order_by("-created_at")
              .values_list("to", flat=True)[:200])
    form = DeviceReplyForm(initial={"address": address, "channel": received[-1].channel if received else "sms"})
    return render(request, "console/messaging/sandbox.html", {
        "address": address, "patient": patient, "received": received, "form": form,
        "recent": list(dict.fromkeys(recent))[:20],
    })


@staff_required
@require_POST
def sandbox_device_reply(request):
    """Answer as the patient: the reply enters the real inbound path (keywords, flows, inbox)."""
    form = DeviceReplyForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Give a channel, an address and a message."))
        return redirect("console:sandbox")
    d = form.cleaned_data
    site_ids = set(sites_for(request.user).values_list("pk", flat=True))
    account = ChannelAccount.objects.filter(site_id__in=site_ids, provider="sandbox", channel=d["channel"],
                                            is_active=True).first()
    if account is None:
        messages.error(request, _("No sandbox account for this channel at your sites."))
        return redirect("console:sandbox")
    address = d["address"].strip().lower() if d["channel"] == Channel.EMAIL else d["address"].strip()
    sandbox_reply(channel=d["channel"], from_address=address, to_address=account.sender, body=d["body"])
    messages.success(request, _("Sent as the patient. It is processed like a real reply."))
    from urllib.parse import urlencode

    return redirect(reverse("console:sandbox") + "?" + urlencode({"address": address}))
