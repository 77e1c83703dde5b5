from django.urls import path

from channels_hub import views

app_name = "hooks"
urlpatterns = [
    path("twilio/messages", views.twilio_messages, name="twilio-messages"),
    path("twilio/status", views.twilio_status, name="twilio-status"),
]
