"""patient_merge: everything moves to the survivor, ledgers are copied, audit rows stay, nothing dangles."""

import datetime as dt

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError

from clinics.models import User
from config.errors import DomainError
from consent.models import AccessLog, ConsentAction, ConsentEvent, ConsentSource, Purpose
from consent.policy import may_contact
from consent.selectors import consent_matrix
from consent.services import access_log_record, consent_grant, consent_revoke
from patients.models import ChangeSource, ContactKind, ContactPoint, Patient, PatientChange, PatientMerge
from patients.selectors import patient_timeline, patients_visible_to, portal_patients_for
from patients.services import (
    contact_point_add,
    identifier_add,
    patient_create,
    patient_merge,
    patient_update,
    portal_account_ensure,
)
from tests.factories import OrganizationFactory, SiteFactory, staff_user

T0 = dt.datetime(2026, 2, 1, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def desk(site_a, site_b):
    return staff_user(sites=[site_a, site_b], email="desk@example.org")


@pytest.fixture
def survivor(site_a, time_machine):
    time_machine.move_to(T0, tick=False)
    patient = patient_create(
        home_site=site_a, given_name="Mario", family_name="Rossi", date_of_birth=dt.date(1975, 3, 9), mrn="A-1",
        contact_points=[{"kind": "phone", "value": "347 123 4567"}, {"kind": "email", "value": "mario@example.org"}],
    )
    consent_grant(patient=patient, channel="sms", purpose="care", source=ConsentSource.PORTAL, at=T0)
    return patient


@pytest.fixture
def loser(site_b, desk, survivor, time_machine):
    """A duplicate with its own history: contact points (one the survivor has), MRNs, consent, reads."""
    time_machine.move_to(T0 + HOUR, tick=False)
    patient = patient_create(home_site=site_b, given_name="Mario", family_name="Rosi", date_of_birth=dt.date(1975, 3, 9),
                             mrn="A-1", actor=desk)
    contact_point_add(patient=patient, kind="phone", value="+39 347 123 4567", is_verified=True)
    contact_point_add(patient=patient, kind="whatsapp", value="+39 333 765 4321")
    contact_point_add(patient=patient, kind="phone", value="+48 601 234 567", label="Warsaw")
    contact_point_add(patient=patient, kind="email", value="m.rossi@example.pl")
    identifier_add(patient=patient, system="mrn", value="B-2")
    time_machine.move_to(T0 + 2 * HOUR, tick=False)
    consent_grant(patient=patient, channel="whatsapp", purpose="care", source=ConsentSource.STAFF, actor=desk,
                  at=T0 + 2 * HOUR)
    consent_revoke(patient=patient, channel="sms", purpose="surveys", source=ConsentSource.KEYWORD, at=T0 + 2 * HOUR)
    time_machine.move_to(T0 + 3 * HOUR, tick=False)
    access_log_record(patient=patient, what="profile", actor=desk)
    patient_update(patient=patient, actor=desk, source=ChangeSource.STAFF, pronouns="he/him")
    portal_account_ensure(email="m.rossi@example.pl")
    time_machine.move_to(T0 + 4 * HOUR, tick=False)
    return patient


def ledger(patient):
    return list(ConsentEvent.objects.filter(patient=patient).order_by("id").values())


def test_merge_moves_contact_points_without_duplicates(survivor, loser, desk):
    patient_merge(survivor=survivor, loser=loser, actor=desk)

    rows = {(c.kind, c.value): c for c in ContactPoint.objects.filter(patient=survivor)}
    assert set(rows) == {
        ("phone", "+393471234567"), ("phone", "+48601234567"), ("email", "mario@example.org"),
        ("email", "m.rossi@example.pl"), ("whatsapp", "+393337654321"),
    }
    assert not ContactPoint.objects.filter(patient=loser).exists()
    # the twin the loser had verified is verified on the survivor
    assert rows[("phone", "+393471234567")].is_verified
    assert rows[("phone", "+48601234567")].label == "Warsaw"
    # the survivor's primaries stay; a kind only the loser had keeps its primary
    primaries = {(c.kind, c.value) for c in rows.values() if c.is_primary}
    assert primaries == {("phone", "+393471234567"), ("email", "mario@example.org"), ("whatsapp", "+393337654321")}


def test_merge_moves_identifiers_and_profile_history(survivor, loser, desk):
    loser_changes = list(PatientChange.objects.filter(patient=loser).values_list("pk", flat=True))

    merge = patient_merge(survivor=survivor, loser=loser, actor=desk)

    assert sorted(survivor.identifiers.values_list("value", flat=True)) == ["A-1", "B-2"]
    assert not loser.identifiers.exists()
    assert not PatientChange.objects.filter(patient=loser).exists()
    assert set(loser_changes) < set(PatientChange.objects.filter(patient=survivor).values_list("pk", flat=True))
    last = PatientChange.objects.filter(patient=survivor).first()
    assert (last.summary, last.changes, last.actor) == ("Duplicate record merged in", {"merged_from": [None, loser.pk]},
                                                        desk)
    assert merge.moved["patients.contactpoint"] == 3
    assert merge.moved["patients.patientidentifier"] == 1
    assert merge.moved["patients.patientchange"] == len(loser_changes)


def test_merge_copies_the_consent_ledger_and_leaves_the_losers_untouched(survivor, loser, desk):
    before = ledger(loser)
    own = ledger(survivor)

    merge = patient_merge(survivor=survivor, loser=loser, actor=desk)

    assert ledger(loser) == before
    copies = ConsentEvent.objects.filter(patient=survivor).exclude(pk__in=[e["id"] for e in own]).order_by("id")
    assert merge.moved["consent.consentevent"] == len(before) == copies.count() == 2
    for original, copy in zip(before, copies, strict=True):
        assert copy.copied_from_id == original["id"]
        assert copy.source == ConsentSource.MERGE
        for field in ("channel", "purpose", "action", "at", "wording_version", "wording_text", "actor_id", "actor_label"):
            assert getattr(copy, field) == original[field], field
    # the survivor's consent now reflects both records
    assert may_contact(survivor, "whatsapp", Purpose.CARE).reason == "granted"
    assert may_contact(survivor, "sms", Purpose.SURVEYS).reason == "revoked"
    assert may_contact(survivor, "sms", Purpose.CARE).reason == "granted"
    matrix = {(s.channel, s.purpose): s.granted for s in consent_matrix(survivor)}
    assert matrix[("whatsapp", "care")] is True and matrix[("sms", "surveys")] is False


def test_merge_keeps_the_access_log_on_the_loser(survivor, loser, desk):
    reads = list(AccessLog.objects.filter(patient=loser).values_list("pk", flat=True))

    merge = patient_merge(survivor=survivor, loser=loser, actor=desk)

    assert reads
    assert list(AccessLog.objects.filter(patient=loser).values_list("pk", flat=True)) == reads
    assert not AccessLog.objects.filter(patient=survivor).exists()
    assert "consent.accesslog" not in merge.moved


def test_the_loser_stays_pointing_at_the_survivor(survivor, loser, desk):
    merge = patient_merge(survivor=survivor, loser=loser, actor=desk)

    loser.refresh_from_db()
    assert loser.merged_into == survivor and loser.is_merged
    assert (merge.survivor, merge.loser, merge.actor, merge.at) == (survivor, loser, desk, T0 + 4 * HOUR)
    assert PatientMerge.objects.get(loser=loser) == merge
    assert set(patients_visible_to(desk)) == {survivor}
    assert may_contact(loser, "sms", Purpose.CARE).reason == "merged"


def test_the_losers_portal_account_opens_the_survivor(survivor, loser, desk):
    account = User.objects.get(email="m.rossi@example.pl")
    assert list(portal_patients_for(account)) == [loser]

    patient_merge(survivor=survivor, loser=loser, actor=desk)

    assert list(portal_patients_for(account)) == [survivor]


def test_the_survivors_timeline_includes_the_losers_history_once(survivor, loser, desk):
    patient_merge(survivor=survivor, loser=loser, actor=desk)

    entries = patient_timeline(survivor)

    titles = [(e.kind, e.title) for e in entries]
    assert titles.count(("consent", "Consent granted: WhatsApp, Care and appointment reminders")) == 1
    assert titles.count(("consent", "Consent withdrawn: SMS, Satisfaction surveys")) == 1
    assert titles.count(("consent", "Consent granted: SMS, Care and appointment reminders")) == 1
    assert titles.count(("access", "Record viewed: Profile (edit form)")) == 1
    assert titles.count(("profile", "Patient created")) == 2
    assert ("profile", "Profile changed") in titles
    assert titles[0] == ("profile", "Duplicate record merged in")
    # the original statement is shown, with its own provenance
    shown = next(e for e in entries if e.title.startswith("Consent granted: WhatsApp"))
    assert (shown.detail, shown.actor) == ("Staff", "desk")
    assert [e.at for e in entries] == sorted((e.at for e in entries), reverse=True)


def test_merging_a_patient_into_itself_is_refused(survivor, desk):
    with pytest.raises(ValidationError) as exc:
        patient_merge(survivor=survivor, loser=survivor, actor=desk)

    assert list(exc.value.message_dict) == ["loser"]
    assert not PatientMerge.objects.exists()


def test_merging_across_organisations_is_refused(survivor, desk):
    elsewhere = SiteFactory(organization=OrganizationFactory(name="Altra", slug="altra"))
    stranger = patient_create(home_site=elsewhere, given_name="Mario", family_name="Rossi",
                              contact_points=[{"kind": "phone", "value": "333 000 1111"}])

    with pytest.raises(ValidationError) as exc:
        patient_merge(survivor=survivor, loser=stranger, actor=desk)

    assert list(exc.value.message_dict) == ["loser"]
    assert Patient.objects.get(pk=stranger.pk).merged_into is None
    assert stranger.contact_points.count() == 1


def test_merging_twice_is_a_409_conflict(survivor, loser, desk, site_a):
    patient_merge(survivor=survivor, loser=loser, actor=desk)
    third = patient_create(home_site=site_a, given_name="Mario", family_name="Rossi")

    for kwargs in [{"survivor": survivor, "loser": loser}, {"survivor": third, "loser": loser},
                   {"survivor": loser, "loser": third}]:
        with pytest.raises(DomainError) as exc:
            patient_merge(actor=desk, **kwargs)
        assert (exc.value.status, exc.value.field) == (409, "loser")
    assert PatientMerge.objects.count() == 1


def test_a_chain_of_merges_keeps_every_history(survivor, loser, desk, site_a):
    # given a record merged into the loser first
    older = patient_create(home_site=site_a, given_name="M.", family_name="Rossi")
    access_log_record(patient=older, what="appointments", actor=desk)
    patient_merge(survivor=loser, loser=older, actor=desk)

    patient_merge(survivor=survivor, loser=loser, actor=desk)

    titles = [e.title for e in patient_timeline(survivor)]
    assert "Record viewed: appointments" in titles
    assert titles.count("Patient created") == 3


# --- nothing is left behind --------------------------------------------------------------------

def reverse_relations():
    """Every relation pointing at Patient, hidden ones (related_name='+', M2M through tables) too."""
    return [f for f in Patient._meta.get_fields(include_hidden=True) if f.auto_created and not f.concrete]


def test_every_one_to_one_relation_to_patient_declares_what_a_merge_does():
    # a one-to-one cannot simply be re-pointed (the survivor may have one): it must say keep or copy
    undeclared = [
        rel.related_model._meta.label for rel in reverse_relations()
        if rel.one_to_one and getattr(rel.related_model, "merge_strategy", None) != "keep"
        and not hasattr(rel.related_model, "merge_copy")
    ]
    assert undeclared == []


def test_every_relation_to_patient_is_moved_copied_or_kept(survivor, loser, desk):
    relations = [r for r in reverse_relations() if r.related_model is not Patient and not r.many_to_many]
    def pointing_at_loser(rel):
        return set(rel.related_model._base_manager.filter(**{rel.field.name: loser}).values_list("pk", flat=True))

    left_before = {r: pointing_at_loser(r) for r in relations}
    assert sum(map(len, left_before.values())) >= 10  # the fixture gives the loser a real history

    merge = patient_merge(survivor=survivor, loser=loser, actor=desk)

    for rel in relations:
        model = rel.related_model
        label = model._meta.label_lower
        left = pointing_at_loser(rel)
        if getattr(model, "merge_strategy", None) == "keep":
            assert left >= left_before[rel], label  # audit rows stay (the merge adds its own record)
        elif hasattr(model, "merge_copy"):
            assert label in merge.moved, label
            if model is ConsentEvent:  # an append-only ledger keeps its originals
                assert left == left_before[rel]
        else:
            # the default, for any model that declares nothing: moved, nothing points at the loser
            assert label in merge.moved, label
            assert left == set(), label


def test_many_to_many_links_to_the_loser_move_without_duplicates(survivor, loser, desk, site_a):
    # A many-to-many to Patient with related_name="+" (hidden from related_objects) must move too.
    links = [
        (rel.related_model, rel.field) for rel in reverse_relations() if rel.many_to_many
    ]
    if not links:
        pytest.skip("no many-to-many relation to Patient is installed")
    model, m2m = links[0]
    if model is not apps.get_model("messaging", "Conversation"):
        pytest.skip(f"no fixture for {model._meta.label}")
    both = model.objects.create(site=site_a, address="+393330000001")
    only_loser = model.objects.create(site=site_a, address="+393330000002")
    getattr(both, m2m.name).add(survivor, loser)
    getattr(only_loser, m2m.name).add(loser)

    patient_merge(survivor=survivor, loser=loser, actor=desk)

    assert list(getattr(both, m2m.name).all()) == [survivor]
    assert list(getattr(only_loser, m2m.name).all()) == [survivor]


def test_the_kinds_stay_consistent_after_merge(survivor, loser, desk):
    patient_merge(survivor=survivor, loser=loser, actor=desk)

    for kind in ContactKind.values:
        points = ContactPoint.objects.filter(patient=survivor, kind=kind)
        if points.exists():
            assert points.filter(is_primary=True).count() == 1, kind
    assert ConsentEvent.objects.filter(patient=survivor, action=ConsentAction.GRANT).count() == 2
