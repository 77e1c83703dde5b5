"""The organisation: users, sites, staff roles and API keys. The bottom layer: imports no app."""

from __future__ import annotations

import hashlib
import zoneinfo

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _


def validate_time_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(_("%(value)s is not a known time zone."), params={"value": value}) from None


class Language(models.TextChoices):
    EN = "en", _("English")
    IT = "it", _("Italian")
    PL = "pl", _("Polish")


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create(self, email, password, **extra):
        if not email:
            raise ValueError("email is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email, password=None, **extra):
        extra.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **extra)


class User(AbstractUser):
    """A person who signs in: staff (has a StaffMember) or a patient using the portal.

    Email is the login; it is stored lower-cased and unique.
    """

    username = None
    email = models.EmailField(_("email"), unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def save(self, *args, **kwargs):
        self.email = (self.email or "").strip().lower()
        super().save(*args, **kwargs)

    @property
    def staff_member(self):
        return getattr(self, "staffmember", None)

    @property
    def is_clinic_staff(self) -> bool:
        return self.is_superuser or self.staff_member is not None


class Organization(models.Model):
    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(unique=True)
    default_language = models.CharField(_("default language"), max_length=8, choices=Language.choices, default=Language.EN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("organisation")
        verbose_name_plural = _("organisations")

    def __str__(self) -> str:
        return self.name


class Site(models.Model):
    """A clinic location. Its time zone is the default for its patients and its calendar."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="sites")
    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField()
    time_zone = models.CharField(_("time zone"), max_length=64, validators=[validate_time_zone])
    language = models.CharField(_("language"), max_length=8, choices=Language.choices, default=Language.EN)
    phone_region = models.CharField(
        _("phone region"), max_length=2, default="IT", help_text=_("Country used to read local phone numbers.")
    )
    address = models.TextField(_("address"), blank=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    email = models.EmailField(_("email"), blank=True)
    # {"mon": [["08:00", "18:00"]], ...} in the site's time zone.
    opening_hours = models.JSONField(_("opening hours"), default=dict, blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("site")
        verbose_name_plural = _("sites")
        constraints = [models.UniqueConstraint(fields=["organization", "slug"], name="site_unique_slug")]
        permissions = [("access_site", _("Can access the patients and schedule of this site"))]

    def __str__(self) -> str:
        return self.name

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


class StaffRole(models.TextChoices):
    ADMIN = "admin", _("Administrator")
    FRONT_DESK = "front_desk", _("Front desk")
    CLINICIAN = "clinician", _("Clinician")


class StaffMember(models.Model):
    """A user who works for the organisation. Which sites they see is a guardian grant."""

    user = models.OneToOneField(User, on_delete=models.CASCADE)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="staff")
    role = models.CharField(_("role"), max_length=20, choices=StaffRole.choices)
    display_name = models.CharField(_("display name"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("staff member")
        verbose_name_plural = _("staff members")

    def __str__(self) -> str:
        return self.display_name or self.user.email

    @property
    def can_write_patients(self) -> bool:
        return self.role in (StaffRole.ADMIN, StaffRole.FRONT_DESK)

    @property
    def can_merge(self) -> bool:
        return self.role in (StaffRole.ADMIN, StaffRole.FRONT_DESK)


class ApiKey(models.Model):
    """An integrator's key. Only a SHA-256 of the secret is stored; the prefix finds the row.

    The secret is 32 random bytes, so a fast hash is the right tool (no dictionary to resist).
    """

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(_("name"), max_length=200)
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    hashed_secret = models.CharField(max_length=64, editable=False)
    sites = models.ManyToManyField(Site, related_name="api_keys", verbose_name=_("sites"))
    can_write = models.BooleanField(_("can write"), default=False)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash_secret(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    # Lets DRF treat the key as the authenticated principal.
    is_authenticated = True
    is_anonymous = False


__all__ = ["ApiKey", "Language", "Organization", "Site", "StaffMember", "StaffRole", "User"]
