"""The Django admin's user page is in the reader's language, section titles included."""

from html import unescape

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("lang", "titles"), [
    ("en", ["Personal info", "Permissions", "Important dates"]),
    ("it", ["Informazioni personali", "Permessi", "Date importanti"]),
    ("pl", ["Informacje osobiste", "Uprawnienia", "Ważne daty"]),
])
def test_user_change_page_section_titles_are_translated(admin_client, admin_user, lang, titles):
    response = admin_client.get(f"/admin/clinics/user/{admin_user.pk}/change/", HTTP_ACCEPT_LANGUAGE=lang)

    assert response.status_code == 200
    html = unescape(response.content.decode())
    for title in titles:
        assert f">{title}</h2>" in html
