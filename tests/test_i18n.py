"""Touchpoint ships in English (the source), Italian and Polish.

The catalogues are checked as files (complete, no fuzzy entries, placeholders kept, .mo compiled from the .po)
and as a user meets them (pages and consent wording in the visitor's language, Polish plurals).
"""

import ast
import gettext
import re
from html import unescape
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation

LOCALE = Path(settings.BASE_DIR) / "locale"
TRANSLATED = ["it", "pl"]
NPLURALS = {"it": 2, "pl": 3}

# %(name)s / %(n)d / %(org)r, and {name} / {{ name }} / {{1}} (Django template and Python str.format style).
PERCENT = re.compile(r"%\([A-Za-z_]\w*\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")
BRACES = re.compile(r"\{\{?\s*[\w.]+\s*\}?\}")


def parse_po(path: Path) -> list[dict]:
    """The entries of a .po file: msgctxt, msgid, msgid_plural, msgstr {index: text}, flags. Obsolete ones skipped."""
    entries: list[dict] = []
    cur: dict | None = None
    key: tuple[str, int | None] | None = None

    def new() -> dict:
        return {"flags": set(), "msgstr": {}}

    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#~"):
            continue
        if line.startswith("#"):
            if cur is not None and "msgid" in cur:
                entries.append(cur)
                cur = None
            cur = cur or new()
            if line.startswith("#,"):
                cur["flags"] |= {flag.strip() for flag in line[2:].split(",")}
            continue
        if line.startswith('"'):
            value = ast.literal_eval(line)
            if key[0] == "msgstr":
                cur["msgstr"][key[1]] += value
            else:
                cur[key[0]] += value
            continue
        keyword, _, rest = line.partition(" ")
        value = ast.literal_eval(rest)
        if keyword in ("msgctxt", "msgid") and cur is not None and "msgid" in cur:
            entries.append(cur)
            cur = None
        cur = cur or new()
        if keyword.startswith("msgstr"):
            index = int(keyword[len("msgstr["):-1]) if "[" in keyword else 0
            cur["msgstr"][index] = value
            key = ("msgstr", index)
        else:
            cur[keyword] = value
            key = (keyword, None)
    if cur is not None and "msgid" in cur:
        entries.append(cur)
    return entries


def catalogue(lang: str) -> tuple[dict, list[dict]]:
    entries = parse_po(LOCALE / lang / "LC_MESSAGES" / "django.po")
    header, messages = entries[0], entries[1:]
    assert header["msgid"] == "", "the first entry of a .po file is its header"
    return header, messages


def placeholders(text: str) -> set[str]:
    return set(PERCENT.findall(text)) | {re.sub(r"\s+", "", b) for b in BRACES.findall(text)}


def label(entry: dict) -> str:
    return repr(entry["msgid"][:70])


@pytest.mark.parametrize("lang", ["en", *TRANSLATED])
def test_every_shipped_language_has_a_catalogue_and_its_compiled_file(lang):
    # Given the languages in settings / When we look for their catalogues / Then each has a .po and a .mo
    assert lang in dict(settings.LANGUAGES)
    assert (LOCALE / lang / "LC_MESSAGES" / "django.po").is_file()
    assert (LOCALE / lang / "LC_MESSAGES" / "django.mo").is_file(), "run manage.py compilemessages"


@pytest.mark.parametrize("lang", TRANSLATED)
def test_catalogue_has_no_untranslated_or_fuzzy_entries(lang):
    # Given the catalogue
    header, messages = catalogue(lang)

    # When we look for entries a user would see in English or half-checked
    fuzzy = [label(e) for e in messages if "fuzzy" in e["flags"]]
    untranslated = [label(e) for e in messages if not all(e["msgstr"].values())]
    wrong_forms = [label(e) for e in messages if "msgid_plural" in e and len(e["msgstr"]) != NPLURALS[lang]]

    # Then there are none, and the header is not fuzzy and declares the language's plural forms
    assert messages
    assert not fuzzy, f"{lang}: fuzzy entries: {fuzzy}"
    assert not untranslated, f"{lang}: untranslated entries: {untranslated}"
    assert not wrong_forms, f"{lang}: plural entries without {NPLURALS[lang]} forms: {wrong_forms}"
    assert "fuzzy" not in header["flags"]
    assert f"Language: {lang}\n" in header["msgstr"][0]
    assert f"Plural-Forms: nplurals={NPLURALS[lang]};" in header["msgstr"][0]


@pytest.mark.parametrize("lang", TRANSLATED)
def test_translations_keep_the_placeholders_of_their_source(lang):
    # Given the catalogue
    _header, messages = catalogue(lang)

    # When each translation's placeholders are compared with its msgid's (the plural msgid's for plural forms)
    mismatched = []
    for e in messages:
        for index, text in e["msgstr"].items():
            source = e["msgid_plural"] if "msgid_plural" in e and index > 0 else e["msgid"]
            if "msgid_plural" in e and index == 0:
                source_set = placeholders(e["msgid"]) | placeholders(e["msgid_plural"])
            else:
                source_set = placeholders(source)
            if placeholders(text) != source_set:
                mismatched.append(f"{label(e)}[{index}]: {sorted(placeholders(text))} != {sorted(source_set)}")

    # Then they match exactly
    assert not mismatched, f"{lang}: " + "\n".join(mismatched)


@pytest.mark.parametrize("lang", TRANSLATED)
def test_compiled_catalogue_matches_its_source(lang):
    # Given the .po and the .mo that `make run` uses without gettext installed
    _header, messages = catalogue(lang)
    with (LOCALE / lang / "LC_MESSAGES" / "django.mo").open("rb") as fh:
        compiled = gettext.GNUTranslations(fh)

    # When every msgid is looked up in the .mo
    stale = []
    for e in messages:
        if "msgctxt" in e:
            got = compiled.pgettext(e["msgctxt"], e["msgid"])
            if got != e["msgstr"][0]:
                stale.append(label(e))
        elif "msgid_plural" in e:
            if compiled.ngettext(e["msgid"], e["msgid_plural"], 1) != e["msgstr"][0]:
                stale.append(label(e))
        elif compiled.gettext(e["msgid"]) != e["msgstr"][0]:
            stale.append(label(e))

    # Then it has the same translations: the .mo was compiled from this .po
    assert not stale, f"{lang}: .mo is stale, run manage.py compilemessages: {stale}"


@pytest.mark.django_db
@pytest.mark.parametrize(("lang", "expected", "english"), [
    ("it", ["<html lang=\"it\">", "Personale della struttura: acceda con l'email di lavoro e la password.",
            "Inviami un codice di accesso via email"],
     "Clinic staff: sign in with your work email and password."),
    ("pl", ["<html lang=\"pl\">", "Personel placówki loguje się służbowym adresem e-mail i hasłem.",
            "Wyślij mi kod logowania e-mailem", "Zaloguj się"],
     "Clinic staff: sign in with your work email and password."),
])
def test_staff_sign_in_page_speaks_the_browsers_language(client, lang, expected, english):
    # Given a browser asking for the language / When it opens the sign-in page
    response = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE=lang)

    # Then the page is in that language, not in English
    assert response.status_code == 200
    html = unescape(response.content.decode())
    for text in expected:
        assert text in html
    assert english not in html


@pytest.mark.django_db
@pytest.mark.parametrize(("lang", "expected", "english"), [
    ("it", ["Accedi con un codice", "La preghiamo di contattare la Sua struttura.", "Inviami un codice"],
     "Sign in with a code"),
    ("pl", ["Logowanie kodem", "Prosimy o kontakt z placówką.", "Wyślij kod"], "Sign in with a code"),
])
def test_portal_sign_in_page_speaks_the_browsers_language(client, lang, expected, english):
    # Given a patient's browser asking for the language / When it opens the portal sign-in page
    response = client.get("/portal/login/", HTTP_ACCEPT_LANGUAGE=lang)

    # Then the page is in that language
    assert response.status_code == 200
    html = unescape(response.content.decode())
    for text in expected:
        assert text in html
    assert english not in html


@pytest.mark.parametrize(("lang", "start"), [("it", "Acconsento a ricevere"), ("pl", "Wyrażam zgodę na otrzymywanie")])
def test_consent_wording_is_shown_in_the_patients_language(lang, start):
    from consent.models import Purpose
    from consent.wording import current_wording

    # Given each purpose / When its wording is read in the language
    for purpose in Purpose:
        version, english = current_wording(purpose)
        with translation.override(lang):
            same_version, text = current_wording(purpose)

        # Then the version is the same (it names the text, not the language) and the text is translated
        assert same_version == version
        assert text.startswith(start)
        assert text != english


MESSAGES = ("%(counter)s message.", "%(counter)s messages.")
WAITING = ("%(counter)s conversation waits for an answer.", "%(counter)s conversations wait for an answer.")


@pytest.mark.parametrize(("msgids", "count", "expected"), [
    (MESSAGES, 1, "1 wiadomość."), (MESSAGES, 2, "2 wiadomości."), (MESSAGES, 5, "5 wiadomości."),
    (WAITING, 1, "1 rozmowa czeka na odpowiedź."), (WAITING, 3, "3 rozmowy czekają na odpowiedź."),
    (WAITING, 12, "12 rozmów czeka na odpowiedź."), (WAITING, 22, "22 rozmowy czekają na odpowiedź."),
    (WAITING, 25, "25 rozmów czeka na odpowiedź."),
])
def test_polish_counts_use_the_three_plural_forms(msgids, count, expected):
    # Given Polish, whose plural depends on the last digits (1 / 2-4 except 12-14 / the rest)
    singular, plural = msgids

    # When a count is shown
    with translation.override("pl"):
        text = translation.ngettext(singular, plural, count) % {"counter": count}

    # Then the right form is used
    assert text == expected
