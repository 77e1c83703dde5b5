"""The consent ledger and access log are append-only; consent_record validates and records provenance."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import ProtectedError
from django.test import RequestFactory

from config.errors import DomainError
from consent.models import AccessLog, ConsentAction, ConsentEvent, ConsentSource, Purpose
from consent.policy import may_contact
from consent.selectors import access_log_for, consent_events, consent_latest, consent_matrix
from consent.services import (
    access_log_record,
    client_ip,
    consent_grant,
    consent_record,
    consent_revoke,
    consent_revoke_channel,
)
from consent.wording import current_wording
from patients.models import Channel, Patient
from tests.factories import PatientFactory, api_key, consent_event, staff_user

AT = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def patient(site_a):
    return PatientFactory(home_site=site_a, given_name="Anna", family_name="Rossi")


@pytest.fixture
def event(patient):
    return consent_event(patient, Channel.SMS, Purpose.CARE, at=AT)


@pytest.fixture
def log_row(patient):
    return access_log_record(patient=patient, what="profile", actor=None)


# --- append-only in Python -------------------------------------------------------------------

@pytest.mark.parametrize("row", ["event", "log_row"])
def test_saving_an_existing_row_again_raises(row, request):
    obj = request.getfixturevalue(row)
    obj.note = obj.what = "changed"

    with pytest.raises(TypeError, match="append-only"):
        obj.save()


@pytest.mark.parametrize("row", ["event", "log_row"])
def test_deleting_a_row_raises(row, request):
    obj = request.getfixturevalue(row)

    with pytest.raises(TypeError, match="append-only"):
        obj.delete()
    assert type(obj).objects.filter(pk=obj.pk).exists()


@pytest.mark.parametrize(("model", "row", "change"), [
    (ConsentEvent, "event", {"action": ConsentAction.REVOKE}),
    (AccessLog, "log_row", {"what": "nothing"}),
])
def test_queryset_update_and_delete_raise(model, row, change, request):
    obj = request.getfixturevalue(row)

    with pytest.raises(TypeError, match="append-only"):
        model.objects.filter(pk=obj.pk).update(**change)
    with pytest.raises(TypeError, match="append-only"):
        model.objects.update(**change)
    with pytest.raises(TypeError, match="append-only"):
        model.objects.filter(pk=obj.pk).delete()
    with pytest.raises(TypeError, match="append-only"):
        model.objects.all().delete()
    assert model.objects.filter(pk=obj.pk, **change).count() == 0


def test_bulk_update_raises(event):
    event.action = ConsentAction.REVOKE

    with pytest.raises(TypeError, match="append-only"), transaction.atomic():
        ConsentEvent.objects.bulk_update([event], ["action"])
    assert ConsentEvent.objects.get(pk=event.pk).action == ConsentAction.GRANT


def test_a_patient_with_a_ledger_cannot_be_deleted(patient, event):
    with pytest.raises(ProtectedError):
        Patient.objects.filter(pk=patient.pk).delete()
    assert ConsentEvent.objects.filter(pk=event.pk).exists()


# --- append-only in the database (migration consent/0002) ---------------------------------------

@pytest.mark.postgres
@pytest.mark.parametrize(("table", "row"), [("consent_consentevent", "event"), ("consent_accesslog", "log_row")])
@pytest.mark.parametrize("statement", [
    "UPDATE {table} SET patient_id = patient_id WHERE id = %s",
    "DELETE FROM {table} WHERE id = %s",
])
def test_postgres_refuses_raw_update_and_delete(table, row, statement, request):
    obj = request.getfixturevalue(row)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement.format(table=table), [obj.pk])

    assert type(obj).objects.filter(pk=obj.pk, patient_id=obj.patient_id).exists()


@pytest.mark.postgres
def test_postgres_refuses_an_update_that_bypasses_the_model_guard(event):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        ConsentEvent._base_manager.filter(pk=event.pk).update(action=ConsentAction.REVOKE)

    assert ConsentEvent.objects.get(pk=event.pk).action == ConsentAction.GRANT


# --- consent_record --------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "overrides"), [
    ("channel", {"channel": "fax"}),
    ("purpose", {"purpose": "billing"}),
    ("action", {"action": "maybe"}),
    ("source", {"source": "rumour"}),
    ("at", {"at": dt.datetime(2030, 1, 1, tzinfo=dt.UTC)}),
])
def test_consent_record_names_the_bad_field_and_writes_nothing(field, overrides, patient):
    kwargs = {"patient": patient, "channel": Channel.SMS, "purpose": Purpose.CARE, "action": ConsentAction.GRANT,
              "source": ConsentSource.STAFF} | overrides

    with pytest.raises(ValidationError) as exc:
        consent_record(**kwargs)

    assert list(exc.value.message_dict) == [field]
    assert ConsentEvent.objects.count() == 0


def test_consent_record_accepts_a_time_slightly_ahead_for_clock_skew(patient, time_machine):
    time_machine.move_to(AT, tick=False)

    event = consent_grant(patient=patient, channel=Channel.SMS, purpose=Purpose.CARE, source=ConsentSource.PORTAL,
                          at=AT + dt.timedelta(minutes=4))

    assert event.at == AT + dt.timedelta(minutes=4)


def test_consent_record_refuses_a_merged_patient(patient, site_a):
    survivor = PatientFactory(home_site=site_a)
    Patient.objects.filter(pk=patient.pk).update(merged_into=survivor)
    patient.refresh_from_db()

    with pytest.raises(DomainError) as exc:
        consent_grant(patient=patient, channel=Channel.SMS, purpose=Purpose.CARE, source=ConsentSource.STAFF)

    assert exc.value.status == 409
    assert ConsentEvent.objects.count() == 0


def test_a_grant_records_the_current_wording_and_provenance(patient, site_a, time_machine):
    time_machine.move_to(AT, tick=False)
    user = staff_user(sites=[site_a], email="desk@example.org")

    event = consent_grant(patient=patient, channel=Channel.EMAIL, purpose=Purpose.SURVEYS, source=ConsentSource.STAFF,
                          actor=user, ip_address="203.0.113.5", note="asked at the desk")

    version, text = current_wording(Purpose.SURVEYS)
    event.refresh_from_db()
    assert (event.wording_version, event.wording_text) == (version, text)
    assert text
    assert (event.actor, event.actor_label, event.ip_address) == (user, "desk", "203.0.113.5")
    assert (event.at, event.recorded_at, event.note) == (AT, AT, "asked at the desk")


def test_a_grant_on_an_older_wording_keeps_that_version_without_todays_text(patient):
    event = consent_grant(patient=patient, channel=Channel.SMS, purpose=Purpose.CARE, source=ConsentSource.IMPORT,
                          wording_version="care/2019-05", at=AT)

    assert (event.wording_version, event.wording_text) == ("care/2019-05", "")


def test_a_revoke_records_the_version_but_no_text(patient):
    event = consent_revoke(patient=patient, channel=Channel.SMS, purpose=Purpose.MARKETING, source=ConsentSource.KEYWORD)

    assert event.wording_version == current_wording(Purpose.MARKETING)[0]
    assert event.wording_text == ""
    assert event.actor_label == str(ConsentSource.KEYWORD.label)


def test_an_api_grant_is_labelled_with_the_key(patient, site_a):
    key, _plain = api_key(sites=[site_a], name="EHR bridge")

    event = consent_grant(patient=patient, channel=Channel.SMS, purpose=Purpose.CARE, source=ConsentSource.API,
                          api_key=key)

    assert (event.api_key, event.actor, event.actor_label) == (key, None, "API: EHR bridge")


def test_a_portal_grant_is_labelled_as_the_patient(patient):
    from clinics.models import User

    account = User.objects.create_user(email="anna@example.org")

    event = consent_grant(patient=patient, channel=Channel.SMS, purpose=Purpose.CARE, source=ConsentSource.PORTAL,
                          actor=account)

    assert event.actor_label == "Patient (anna@example.org)"


def test_revoking_a_channel_withdraws_every_purpose_on_it_only(patient, time_machine):
    # given grants everywhere
    time_machine.move_to(AT, tick=False)
    for channel in Channel.values:
        for purpose in Purpose.values:
            consent_grant(patient=patient, channel=channel, purpose=purpose, source=ConsentSource.PORTAL,
                          at=AT - dt.timedelta(days=1))

    # when the patient texts STOP
    events = consent_revoke_channel(patient=patient, channel=Channel.SMS, source=ConsentSource.KEYWORD, note="STOP")

    # then SMS is closed for every purpose and nothing else changed
    assert sorted(e.purpose for e in events) == sorted(Purpose.values)
    assert all(e.action == ConsentAction.REVOKE and e.note == "STOP" for e in events)
    for purpose in Purpose.values:
        assert may_contact(patient, Channel.SMS, purpose).reason == "revoked"
        assert may_contact(patient, Channel.EMAIL, purpose).reason == "granted"
        assert may_contact(patient, Channel.WHATSAPP, purpose).reason == "granted"
    assert ConsentEvent.objects.filter(patient=patient).count() == 9 + 3


def test_revoking_an_unknown_channel_writes_nothing(patient):
    with pytest.raises(ValidationError) as exc:
        consent_revoke_channel(patient=patient, channel="pager", source=ConsentSource.KEYWORD)

    assert list(exc.value.message_dict) == ["channel"]
    assert ConsentEvent.objects.count() == 0


def test_the_matrix_shows_the_state_in_force_now(patient, time_machine):
    time_machine.move_to(AT, tick=False)
    consent_event(patient, Channel.SMS, Purpose.CARE, action=ConsentAction.GRANT, at=AT - dt.timedelta(days=2))
    consent_event(patient, Channel.SMS, Purpose.CARE, action=ConsentAction.REVOKE, at=AT - dt.timedelta(days=1))
    # a statement dated ahead of now does not count yet, as in may_contact
    consent_event(patient, Channel.EMAIL, Purpose.CARE, action=ConsentAction.GRANT, at=AT + dt.timedelta(hours=1))

    matrix = {(s.channel, s.purpose): s.granted for s in consent_matrix(patient)}

    assert len(matrix) == 9
    assert matrix[(Channel.SMS, Purpose.CARE)] is False
    assert matrix[(Channel.EMAIL, Purpose.CARE)] is None
    assert set(consent_latest(patient)) == {(Channel.SMS, Purpose.CARE)}
    assert set(consent_latest(patient, at=AT + dt.timedelta(hours=2))) == {
        (Channel.SMS, Purpose.CARE), (Channel.EMAIL, Purpose.CARE)
    }
    assert [e.action for e in consent_events(patient)] == ["grant", "revoke", "grant"]


# --- access log ------------------------------------------------------------------------------

def test_access_log_records_the_staff_reader_and_where_from(patient, site_a, time_machine):
    time_machine.move_to(AT, tick=False)
    user = staff_user(sites=[site_a], email="dr.verdi@example.org")
    request = RequestFactory().get("/console/patients/1/?tab=consent", REMOTE_ADDR="198.51.100.20")

    row = access_log_record(patient=patient, what="consent", actor=user, request=request)

    row.refresh_from_db()
    assert (row.actor, row.api_key, row.actor_label) == (user, None, "dr.verdi")
    assert (row.what, row.at, row.ip_address) == ("consent", AT, "198.51.100.20")
    assert row.path == "/console/patients/1/?tab=consent"
    assert list(access_log_for(patient)) == [row]


def test_access_log_records_an_api_key_reader(patient, site_a):
    key, _plain = api_key(sites=[site_a], name="EHR bridge")

    row = access_log_record(patient=patient, what="x" * 80, actor=key, request=None)

    assert (row.actor, row.api_key, row.actor_label) == (None, key, "API: EHR bridge")
    assert (len(row.what), row.ip_address, row.path) == (50, None, "")


def test_access_log_without_an_actor_says_unknown(patient):
    assert access_log_record(patient=patient, what="profile", actor=None).actor_label == "Unknown"


@pytest.mark.parametrize(("remote", "forwarded", "expected"), [
    pytest.param("198.51.100.20", None, "198.51.100.20", id="no-proxy"),
    pytest.param("127.0.0.1", "203.0.113.7", "203.0.113.7", id="local-proxy"),
    pytest.param("127.0.0.1", "203.0.113.7, 127.0.0.1", "203.0.113.7", id="two-local-proxies"),
    pytest.param("127.0.0.1", "6.6.6.6, 203.0.113.7", "203.0.113.7", id="client-prepends-a-forged-hop"),
    pytest.param("198.51.100.20", "203.0.113.7", "198.51.100.20", id="untrusted-peer-cannot-claim-an-address"),
    pytest.param("127.0.0.1", "unknown", "127.0.0.1", id="garbage-header"),
    pytest.param("127.0.0.1", "203.0.113.7, <script>", "127.0.0.1", id="garbage-last-hop"),
    pytest.param("::1", "2001:db8::5", "2001:db8::5", id="ipv6"),
    pytest.param("", "203.0.113.7", None, id="no-peer"),
])
def test_client_ip_trusts_forwarded_for_only_from_a_trusted_proxy(remote, forwarded, expected):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded

    assert client_ip(RequestFactory().get("/", **extra)) == expected


def test_client_ip_honours_configured_trusted_proxies(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    request = RequestFactory().get("/", REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="203.0.113.7, 10.9.9.9")

    assert client_ip(request) == "203.0.113.7"
    assert client_ip(RequestFactory().get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7")) == (
        "127.0.0.1"
    )


def test_access_log_stores_the_forwarded_client_and_survives_a_garbage_header(patient):
    behind_proxy = RequestFactory().get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7")
    garbage = RequestFactory().get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="not-an-ip")

    first = access_log_record(patient=patient, what="profile", actor=None, request=behind_proxy)
    second = access_log_record(patient=patient, what="profile", actor=None, request=garbage)

    assert AccessLog.objects.get(pk=first.pk).ip_address == "203.0.113.7"
    assert AccessLog.objects.get(pk=second.pk).ip_address == "127.0.0.1"
