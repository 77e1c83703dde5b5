from django.urls import path

from portal import views

app_name = "portal"
urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.login, name="login"),
    path("patients/<int:pk>/choose/", views.choose, name="choose"),
    path("profile/", views.profile, name="profile"),
    path("preferences/", views.preferences, name="preferences"),
    path("consents/", views.consents, name="consents"),
    path("consents/history/", views.consent_history, name="consent_history"),
    path("my-data/", views.export, name="export"),
]
