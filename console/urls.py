from django.urls import path

from console import messaging_views, views

app_name = "console"
urlpatterns = [
    path("", views.home, name="home"),
    path("patients/new/", views.patient_new, name="patient_new"),
    path("patients/<int:pk>/", views.patient_detail, name="patient"),
    path("patients/<int:pk>/edit/", views.patient_edit, name="patient_edit"),
    path("patients/<int:pk>/preferences/", views.patient_preferences, name="patient_preferences"),
    path("patients/<int:pk>/export/", views.patient_export_view, name="patient_export"),
    path("patients/<int:pk>/contacts/add/", views.contact_add, name="contact_add"),
    path("patients/<int:pk>/contacts/<int:cp_pk>/primary/", views.contact_set_primary, name="contact_primary"),
    path("patients/<int:pk>/contacts/<int:cp_pk>/invalidate/", views.contact_invalidate, name="contact_invalidate"),
    path("patients/<int:pk>/contacts/<int:cp_pk>/revalidate/", views.contact_revalidate, name="contact_revalidate"),
    path("patients/<int:pk>/consent/", views.consent_add, name="consent_add"),
    path("patients/<int:pk>/merge/<int:other_pk>/", views.patient_merge_view, name="patient_merge"),
    path("messages/", messaging_views.message_log, name="messages"),
    path("messages/<int:pk>/", messaging_views.message_detail, name="message"),
    path("inbox/", messaging_views.inbox_view, name="inbox"),
    path("patients/<int:pk>/conversation/", messaging_views.patient_conversation, name="patient_conversation"),
    path("conversations/<int:pk>/", messaging_views.conversation_view, name="conversation"),
    path("sandbox/", messaging_views.sandbox_device, name="sandbox"),
    path("sandbox/reply/", messaging_views.sandbox_device_reply, name="sandbox_reply"),
]
