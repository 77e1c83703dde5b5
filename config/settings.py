"""Touchpoint settings: one file, every knob from the environment.

Defaults are the embedded mode (SQLite, Celery's filesystem broker, the sandbox channel
provider), so `make run` needs no server. Production sets DATABASE_URL, REDIS_URL, SECRET_KEY,
ALLOWED_HOSTS, EMAIL_URL and the TWILIO_* variables (see README). A malformed value raises
ImproperlyConfigured naming the variable, at start.
"""

from __future__ import annotations

import sys
import zoneinfo
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()


def _env(name: str, cast, default):
    """Read one variable; any parse error names the variable."""
    try:
        return cast(name, default=default)
    except (ValueError, environ.ImproperlyConfigured, TypeError) as exc:
        raise ImproperlyConfigured(f"{name} is not valid: {exc}") from exc


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = _env(name, env.str, default)
    if value not in allowed:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


DEBUG = _env("DEBUG", env.bool, False)
# pytest sets it implicitly, so `pytest` alone works as well as `make test`.
TESTING = _env("TOUCHPOINT_TESTING", env.bool, "pytest" in sys.modules)
SECRET_KEY = _env("SECRET_KEY", env.str, "")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured("SECRET_KEY must be set (or DEBUG=1 for local development)")
    SECRET_KEY = "touchpoint-insecure-development-key-do-not-use-in-production"  # noqa: S105
ALLOWED_HOSTS = _env("ALLOWED_HOSTS", env.list, ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = _env("CSRF_TRUSTED_ORIGINS", env.list, [])
# The public base URL Twilio calls and links in messages point at (webhook signatures are
# computed against it, so it must be what the outside world sees, not what the proxy forwards).
PUBLIC_BASE_URL = _env("PUBLIC_BASE_URL", env.str, "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "guardian",
    "django_htmx",
    "clinics",
    "patients",
    "consent",
    "scheduling",
    "channels_hub",
    "messaging",
    "analytics",
    "console",
    "portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "clinics.middleware.StaffMfaRequiredMiddleware",
    "clinics.middleware.StaffTimeZoneMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
VAR_DIR.mkdir(exist_ok=True)
DATABASES = {"default": _env("DATABASE_URL", env.db_url, f"sqlite:///{VAR_DIR / 'touchpoint.sqlite3'}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.postgresql":
    _db.setdefault("CONN_MAX_AGE", _env("DATABASE_CONN_MAX_AGE", env.int, 60))
    _db.setdefault("CONN_HEALTH_CHECKS", True)
elif _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let web, worker and beat share the embedded database.
    _db.setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgres://…) or SQLite (sqlite:///…)")
IS_POSTGRES = _db["ENGINE"] == "django.db.backends.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, Celery broker --------------------------------------------------------------
REDIS_URL = _env("REDIS_URL", env.str, "")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured("REDIS_URL must start with redis://, rediss:// or unix://")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # A file cache is shared by web, worker and beat, so login rate limits hold across processes.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache"
            if TESTING
            else "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# --- Auth -------------------------------------------------------------------------------------
AUTH_USER_MODEL = "clinics.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_ADAPTER = "clinics.adapters.AccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_LOGIN_BY_CODE_ENABLED = True
ACCOUNT_LOGIN_BY_CODE_TIMEOUT = 600
# Sign-in by code is for patients: this form links a patient's portal account to the email on file
# first, and refuses staff accounts (they sign in with password + TOTP).
ACCOUNT_FORMS = {"request_login_code": "portal.forms.PortalRequestLoginCodeForm"}
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_SESSION_REMEMBER = False
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": _env("LOGIN_RATE_LIMIT", env.str, "5/5m/ip,5/5m/key"),
    "request_login_code": "10/m/ip,3/m/key",
    "reset_password": "10/m/ip,5/m/key",
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Touchpoint"
# Staff must enrol TOTP before they reach the console when this is on (see clinics.middleware).
STAFF_MFA_REQUIRED = _env("STAFF_MFA_REQUIRED", env.bool, False)
GUARDIAN_ANONYMOUS_USER_NAME = None
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = False

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = _env("SESSION_COOKIE_AGE", env.int, 8 * 3600)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = _env("USE_X_FORWARDED_HOST", env.bool, False)
# Reverse proxies whose X-Forwarded-For is believed for the access log's client IP (IPs or CIDRs).
TRUSTED_PROXIES = _env("TRUSTED_PROXIES", env.list, ["127.0.0.0/8", "::1/128"])
try:
    import ipaddress

    for _net in TRUSTED_PROXIES:
        ipaddress.ip_network(_net, strict=False)
except ValueError as exc:
    raise ImproperlyConfigured(f"TRUSTED_PROXIES is not valid: {exc}") from exc
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _env("SECURE_COOKIES", env.bool, not DEBUG and not TESTING)
SECURE_SSL_REDIRECT = _env("SECURE_SSL_REDIRECT", env.bool, False)
SECURE_HSTS_SECONDS = _env("SECURE_HSTS_SECONDS", env.int, 0)
X_FRAME_OPTIONS = "DENY"

# --- i18n / time ------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("it", _("Italian")), ("pl", _("Polish"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = _env("TIME_ZONE", env.str, "Europe/Rome")
try:
    zoneinfo.ZoneInfo(TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
    raise ImproperlyConfigured(f"TIME_ZONE is not a known IANA time zone: {TIME_ZONE!r}") from exc
USE_I18N = True
USE_TZ = True
# Region used to read phone numbers typed without a country prefix.
PHONE_DEFAULT_REGION = _env("PHONE_DEFAULT_REGION", env.str, "IT").upper()

# --- Static -----------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = _env("STATIC_ROOT", env.str, str(VAR_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
if STATIC_ROOT.startswith(str(VAR_DIR)):
    Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)

# --- Email ------------------------------------------------------------------------------------
_email = _env("EMAIL_URL", env.email_url, "consolemail://" if not TESTING else "memorymail://")
vars().update(_email)
DEFAULT_FROM_EMAIL = _env("DEFAULT_FROM_EMAIL", env.str, "Touchpoint <no-reply@touchpoint.local>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "clinics.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["clinics.permissions.IsStaffOrApiKey"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api_errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"api_key": _env("API_RATE_LIMIT", env.str, "600/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Touchpoint API",
    "DESCRIPTION": "Patient 360, consent ledger and messaging for integrators. "
    "Authenticate with `Authorization: Api-Key <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Channels and the outbound pipeline -----------------------------------------------------
TWILIO_ACCOUNT_SID = _env("TWILIO_ACCOUNT_SID", env.str, "")
TWILIO_AUTH_TOKEN = _env("TWILIO_AUTH_TOKEN", env.str, "")
if bool(TWILIO_ACCOUNT_SID) != bool(TWILIO_AUTH_TOKEN):
    raise ImproperlyConfigured("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set together")
TWILIO_API_BASE_URL = _env("TWILIO_API_BASE_URL", env.str, "https://api.twilio.com").rstrip("/")
TWILIO_TIMEOUT = _env("TWILIO_TIMEOUT", env.float, 10.0)
TWILIO_PARALLEL_REQUESTS = _env("TWILIO_PARALLEL_REQUESTS", env.int, 8)
EMAIL_TIMEOUT = _env("EMAIL_TIMEOUT", env.int, 15)
# Messages claimed per worker batch; a batch in 'sending' longer than the lease is reconciled.
DISPATCH_BATCH_SIZE = _env("DISPATCH_BATCH_SIZE", env.int, 200)
DISPATCH_LEASE_SECONDS = _env("DISPATCH_LEASE_SECONDS", env.int, 120)
SEND_MAX_ATTEMPTS = _env("SEND_MAX_ATTEMPTS", env.int, 8)
SEND_RETRY_BASE_SECONDS = _env("SEND_RETRY_BASE_SECONDS", env.float, 20.0)
# How long an outcome may stay unknown before the relay asks the provider about it.
RECONCILE_AFTER_SECONDS = _env("RECONCILE_AFTER_SECONDS", env.int, 60)
RELAY_INTERVAL_SECONDS = _env("RELAY_INTERVAL_SECONDS", env.float, 15.0)

# --- Consent policy ---------------------------------------------------------------------------
# strict: care reminders and surveys need an explicit opt-in (EU default);
# opt_out: they are allowed until the patient opts out. WhatsApp and marketing always need opt-in.
CONSENT_MODE = _choice("CONSENT_MODE", "strict", ("strict", "opt_out"))

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = _env("CELERY_BROKER_URL", env.str, REDIS_URL or ("memory://" if TESTING else "filesystem://"))
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("out", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith("redis"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = _env("CELERY_TASK_ALWAYS_EAGER", env.bool, False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    # Re-claims due and stuck outbound messages, reconciles unknown outcomes, retries inbound events.
    "messaging-relay": {"task": "messaging.tasks.relay", "schedule": RELAY_INTERVAL_SECONDS},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": _env("LOG_LEVEL", env.str, "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # twilio-python logs every request at INFO, query strings (recipients' numbers) included.
        "twilio": {"level": "WARNING"},
    },
}
