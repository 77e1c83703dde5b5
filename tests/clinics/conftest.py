import pytest


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # staff_user() sets a password; the production hasher costs a third of a second per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
