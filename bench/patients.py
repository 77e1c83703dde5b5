"""Patient search at scale: phone, email and name lookups against a primary-key baseline.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/patients.py
    BENCH_SMOKE=1 …   # 10,000 patients and fewer lookups (CI)

Needs PostgreSQL (the trigram index on names exists only there). DATABASE_URL names the server to
use; the bench creates its own database `touchpoint_bench_<pid>`, migrates it, bulk-loads the
patients (COPY, secondary indexes rebuilt afterwards, then VACUUM ANALYZE), runs the lookups
through `patients.selectors.patient_search`, prints median and p95 per kind with the EXPLAIN of
every query each search runs, and drops the database. It exits 1 if a search reads a whole table
(`Seq Scan on patients_contactpoint` or `on patients_patient`). The last line is
`result: phone_search_p95_vs_pk_p95 <ratio> x`.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

SMOKE = os.environ.get("BENCH_SMOKE", "") not in ("", "0", "false")
PATIENTS = int(os.environ.get("BENCH_PATIENTS", 10_000 if SMOKE else 100_000))
LOOKUPS = int(os.environ.get("BENCH_LOOKUPS", 50 if SMOKE else 300))
WARMUP = 10 if SMOKE else 30
BATCH = 5_000
SEED = 1234

SYLLABLES = {
    "IT": (["Bar", "Cal", "Mon", "Fer", "Gal", "Lom", "Mar", "Pel", "Ros", "San", "Tor", "Val", "Ber", "Cor", "Dol",
            "Fab", "Gen", "Lan", "Nar", "Orl", "Pas", "Sel", "Ter", "Vin", "Zan"],
           ["to", "di", "ca", "ri", "le", "na", "ti", "ve", "lo", "ma", "gi", "ro", "sa", "pi", "ce"],
           ["ini", "elli", "etti", "one", "ari", "ucci", "azzo", "esi", "otti", "ano", "ero", "illo"]),
    "PL": (["Kow", "Now", "Wis", "Wal", "Zal", "Grab", "Krol", "Lis", "Mal", "Pawl", "Sob", "Sik", "Dud", "Ja", "Bor",
            "Chm", "Gor", "Kacz", "Mich", "Ost", "Pie", "Rud", "Szcz", "Tom", "Wil"],
           ["al", "ak", "ie", "ow", "ec", "ur", "an", "ol", "ys", "em", "ar", "ik", "us", "en", "ot"],
           ["ski", "ska", "czyk", "ak", "ek", "owicz", "iak", "ewski", "ewska", "uk", "ny", "ik"]),
}
IT_MOBILE = ["320", "328", "329", "331", "333", "334", "338", "339", "340", "342", "345", "347", "348", "349", "366",
             "380", "388", "389", "392", "393"]
PL_MOBILE = ["501", "502", "505", "510", "512", "530", "535", "600", "601", "602", "605", "660", "664", "691", "693",
             "721", "725", "730", "781", "790", "880", "886"]


def fail(message: str, code: int = 2) -> None:
    print(f"bench/patients.py: {message}", file=sys.stderr)
    sys.exit(code)


def bench_database_url() -> tuple[str, str, dict]:
    """(url of the throwaway database, its name, connection kwargs for the maintenance database)."""
    import environ

    url = os.environ.get("DATABASE_URL", "")
    if not url:
        fail("set DATABASE_URL to a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432/postgres")
    config = environ.Env.db_url_config(url)
    if config["ENGINE"] != "django.db.backends.postgresql":
        fail(f"needs PostgreSQL (the trigram name index exists only there); DATABASE_URL is {config['ENGINE']}")
    name = f"touchpoint_bench_{os.getpid()}"
    parts = urlsplit(url)
    maintenance = {
        "host": config.get("HOST") or None, "port": config.get("PORT") or None, "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None, "dbname": "postgres",
    }
    return urlunsplit(parts._replace(path="/" + name)), name, {k: v for k, v in maintenance.items() if v}


def admin_sql(maintenance: dict, sql: str) -> None:
    import psycopg

    with psycopg.connect(**maintenance, autocommit=True) as conn:
        conn.execute(sql)


class Loader:
    def __init__(self, rng: random.Random):
        from console.management.commands import load_demo as demo

        self.rng = rng
        self.demo = demo
        self.numbers: set[str] = set()

    def family(self, region: str) -> str:
        rng = self.rng
        if rng.random() < 0.35:
            if region == "PL":
                return rng.choice(self.demo.PL_FAMILY)[rng.random() < 0.5]
            return rng.choice(self.demo.IT_FAMILY)
        first, middle, last = SYLLABLES[region]
        return rng.choice(first) + (rng.choice(middle) if rng.random() < 0.6 else "") + rng.choice(last)

    def given(self, region: str) -> str:
        d = self.demo
        pool = (d.PL_FEMALE + d.PL_MALE) if region == "PL" else (d.IT_FEMALE + d.IT_MALE)
        return self.rng.choice(pool + d.EN_FEMALE + d.EN_MALE if self.rng.random() < 0.1 else pool)

    def mobile(self, region: str) -> str:
        rng = self.rng
        while True:
            if region == "PL":
                number = "+48" + rng.choice(PL_MOBILE) + f"{rng.randrange(10**6):06d}"
            else:
                number = "+39" + rng.choice(IT_MOBILE) + f"{rng.randrange(10**7):07d}"
            if number not in self.numbers:
                self.numbers.add(number)
                return number

    def landline(self, region: str) -> str:
        rng = self.rng
        while True:
            if region == "PL":
                number = "+4822" + str(rng.randint(2, 9)) + f"{rng.randrange(10**6):06d}"
            else:
                number = "+3906" + str(rng.randint(3, 9)) + f"{rng.randrange(10**7):07d}"
            if number not in self.numbers:
                self.numbers.add(number)
                return number


class Copier:
    """Rows into a model's table with COPY, every column the model has: the values given, the
    model's defaults (or auto_now) for the rest, each converted the way Django saves it.

    bulk_create spends most of its time building model instances and preparing each field; on a
    busy 2-CPU machine that made the 100,000-patient load take 2-3 minutes. COPY takes seconds,
    and deriving the columns from the model keeps the bench right when the model grows.
    """

    SIMPLE = {"CharField", "TextField", "EmailField", "SlugField", "BooleanField", "IntegerField",
              "BigIntegerField", "PositiveIntegerField", "SmallIntegerField", "ForeignKey", "BigAutoField",
              "AutoField", "DateField"}

    def __init__(self, model, connection):
        from django.utils import timezone

        self.connection = connection
        self.table = model._meta.db_table
        self.fields = list(model._meta.concrete_fields)
        now = timezone.now()
        self.defaults = {}
        for f in self.fields:
            value = now if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False) else f.get_default()
            self.defaults[f.attname] = f.get_db_prep_save(value, connection)
        self.simple = {f.attname for f in self.fields if f.get_internal_type() in self.SIMPLE}

    def next_ids(self, n: int) -> list[int]:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                           [self.table, n])
            return [row[0] for row in cursor.fetchall()]

    def write(self, rows: list[dict]) -> int:
        columns = ", ".join(f'"{f.column}"' for f in self.fields)
        with self.connection.cursor() as cursor, cursor.cursor.copy(f'COPY "{self.table}" ({columns}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([
                    self.defaults[f.attname] if f.attname not in row
                    else row[f.attname] if f.attname in self.simple
                    else f.get_db_prep_save(row[f.attname], self.connection)
                    for f in self.fields
                ])
        return len(rows)


def load(n: int) -> tuple[list, dict]:
    """Load n patients with phones, emails and MRNs. Returns (sites, counts)."""
    import datetime as dt

    from django.db import connection

    from clinics.services import organization_create, site_create
    from patients.models import ContactKind, ContactPoint, Patient, PatientIdentifier
    from patients.normalize import fold

    org = organization_create(name="Bench clinic", slug="bench")
    sites = [
        site_create(organization=org, name="Roma", slug="roma", time_zone="Europe/Rome", language="it", phone_region="IT"),
        site_create(organization=org, name="Warszawa", slug="warszawa", time_zone="Europe/Warsaw", language="pl",
                    phone_region="PL"),
    ]
    rng = random.Random(SEED)
    loader = Loader(rng)
    patient_copy = Copier(Patient, connection)
    point_copy = Copier(ContactPoint, connection)
    identifier_copy = Copier(PatientIdentifier, connection)
    counts = {"patients": 0, "contact_points": 0, "identifiers": 0}
    for start in range(0, n, BATCH):
        size = min(n, start + BATCH) - start
        patients, points, identifiers = [], [], []
        previous = None
        for i, pk in zip(range(start, start + size), patient_copy.next_ids(size), strict=True):
            site = sites[i % 2]
            region = site.phone_region
            given, family = loader.given(region), loader.family(region)
            patients.append({
                "id": pk, "organization_id": org.pk, "home_site_id": site.pk, "given_name": given,
                "family_name": family, "language": site.language, "search_name": fold(f"{given} {family}"),
                "date_of_birth": dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(33_000)),
            })
            # Now and then a parent's number on a child's record.
            mobile = previous if previous is not None and rng.random() < 0.03 else loader.mobile(region)
            previous = mobile
            points.append({"patient_id": pk, "kind": ContactKind.PHONE, "value": mobile, "phone_type": "mobile",
                           "is_primary": True})
            if rng.random() < 0.3:
                points.append({"patient_id": pk, "kind": ContactKind.WHATSAPP, "value": mobile,
                               "phone_type": "mobile", "is_primary": True})
            if rng.random() < 0.15:
                points.append({"patient_id": pk, "kind": ContactKind.PHONE, "value": loader.landline(region),
                               "phone_type": "landline", "label": "home"})
            if rng.random() < 0.8:
                local = fold(f"{given}.{family}").replace(" ", "").replace("'", "")
                points.append({"patient_id": pk, "kind": ContactKind.EMAIL, "value": f"{local}.{i}@example.com",
                               "is_primary": True})
            identifiers.append({"patient_id": pk, "system": "mrn", "value": f"MRN-{i:07d}"})
        for row, pk in zip(points, point_copy.next_ids(len(points)), strict=True):
            row["id"] = pk
        for row, pk in zip(identifiers, identifier_copy.next_ids(len(identifiers)), strict=True):
            row["id"] = pk
        counts["patients"] += patient_copy.write(patients)
        counts["contact_points"] += point_copy.write(points)
        counts["identifiers"] += identifier_copy.write(identifiers)
    return sites, counts


def secondary_indexes(connection, tables: list[str]) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of each index on `tables` that backs no constraint."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.indexname, i.indexdef FROM pg_indexes i
            WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s)
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
            ORDER BY i.tablename, i.indexname
            """,
            [tables],
        )
        return list(cursor.fetchall())


def national(e164: str) -> str:
    """The number as the front desk types it: '347 123 4567', '501 234 567'."""
    digits = e164[3:]
    if e164.startswith("+48"):
        return f"{digits[:3]} {digits[3:6]} {digits[6:]}"
    if digits.startswith("0"):
        return f"{digits[:2]} {digits[2:6]} {digits[6:]}"
    return f"{digits[:3]} {digits[3:6]} {digits[6:]}"


def timed(fn, samples: list) -> list[float]:
    for sample in samples[:WARMUP]:
        fn(sample)
    out = []
    for sample in samples:
        t0 = time.perf_counter()
        fn(sample)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def run() -> int:
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from patients.models import ContactKind, ContactPoint, Patient
    from patients.selectors import patient_search

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    migrated = time.perf_counter() - t0
    t0 = time.perf_counter()
    with transaction.atomic():
        # The usual bulk-load order: secondary indexes (the migrations' own definitions, read back
        # from pg_indexes) are dropped, the rows inserted, the indexes built again in one pass each.
        indexes = secondary_indexes(connection, ["patients_patient", "patients_contactpoint",
                                                 "patients_patientidentifier"])
        with connection.cursor() as cursor:
            for name, _definition in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
        sites, counts = load(PATIENTS)
        inserted = time.perf_counter() - t0
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # run the deferred foreign-key checks now
            for _name, definition in indexes:
                cursor.execute(definition)
    loaded = time.perf_counter() - t0
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"bench: {counts['patients']:,} patients, {counts['contact_points']:,} contact points, "
          f"{counts['identifiers']:,} MRNs; migrate {migrated:.1f} s, load {loaded:.1f} s "
          f"(insert {inserted:.1f} s, {len(indexes)} indexes rebuilt {loaded - inserted:.1f} s)"
          f"{' (smoke mode)' if SMOKE else ''}")

    rng = random.Random(SEED + 1)
    qs = Patient.objects.filter(home_site_id__in=[s.pk for s in sites], merged_into__isnull=True)
    ids = list(Patient.objects.values_list("pk", flat=True))
    phones = list(ContactPoint.objects.filter(kind=ContactKind.PHONE).values_list("value", flat=True))
    emails = list(ContactPoint.objects.filter(kind=ContactKind.EMAIL).values_list("value", flat=True))
    names = list(Patient.objects.values_list("family_name", flat=True))

    def fragment(name: str) -> str:
        word = name.replace("'", "")
        size = min(len(word), rng.randint(4, 6))
        start = rng.randint(0, len(word) - size)
        return word[start:start + size].lower()

    n = LOOKUPS + WARMUP
    cases = {
        "pk": ([rng.choice(ids) for _ in range(n)], lambda pk: list(qs.filter(pk=pk))),
        "phone (national format)": ([national(rng.choice(phones)) for _ in range(n)],
                                    lambda q: list(patient_search(qs, q)[:20])),
        "email": ([rng.choice(emails).upper() for _ in range(n)], lambda q: list(patient_search(qs, q)[:20])),
        "name fragment": ([fragment(rng.choice(names)) for _ in range(n)], lambda q: list(patient_search(qs, q)[:20])),
    }
    results = {}
    for label, (samples, fn) in cases.items():
        found = sum(1 for s in samples[:50] if fn(s))
        if found < min(50, len(samples)):
            print(f"  warning: {label}: only {found}/50 lookups found a patient")
        results[label] = timed(fn, samples)

    print(f"\n{'lookup':<26}{'n':>6}{'median ms':>12}{'p95 ms':>10}")
    for label, values in results.items():
        print(f"{label:<26}{len(values):>6}{statistics.median(values):>12.2f}{p95(values):>10.2f}")

    problems = []
    print()
    for label in ("phone (national format)", "email", "name fragment"):
        sample = cases[label][0][0]
        # Every query the search runs (the phone search first reads the sites' phone regions).
        with CaptureQueriesContext(connection) as ran:
            list(patient_search(qs, sample)[:20])
        print(f"EXPLAIN {label} ({sample!r}), {len(ran.captured_queries)} quer{'y' if len(ran) == 1 else 'ies'}:")
        plans = []
        with connection.cursor() as cursor:
            for query in ran.captured_queries:
                cursor.execute("EXPLAIN " + query["sql"])
                plans.append("\n".join(row[0] for row in cursor.fetchall()))
        for plan in plans:
            print("  " + plan.replace("\n", "\n  "))
        plan = "\n".join(plans)
        for table in ("patients_contactpoint", "patients_patient"):
            if f"Seq Scan on {table}" in plan:
                problems.append(f"{label}: Seq Scan on {table}")
        if label == "name fragment":
            print(f"  -> trigram index used: {'yes' if 'patient_search_name_trgm' in plan else 'NO'}")
        print()
    pk_plan = qs.filter(pk=cases["pk"][0][0]).explain()
    print("EXPLAIN pk:\n  " + pk_plan.replace("\n", "\n  ") + "\n")

    if problems:
        print("FAIL: " + "; ".join(problems))
    else:
        print("ok: no search reads a whole table (no Seq Scan on patients_contactpoint or patients_patient)")
    ratio = p95(results["phone (national format)"]) / p95(results["pk"])
    print(f"result: phone_search_p95_vs_pk_p95 {ratio:.2f} x")
    return 1 if problems else 0


def main() -> int:
    url, name, maintenance = bench_database_url()
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    admin_sql(maintenance, f'CREATE DATABASE "{name}"')
    try:
        import django

        django.setup()
        return run()
    finally:
        from django.db import connections

        connections.close_all()
        admin_sql(maintenance, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
