"""`manage.py load_demo`: the demo organisation, its sites, staff and ~200 patients.

Idempotent: when the demo organisation exists nothing is written, the logins are printed again.
Everything goes through the domain services (no raw model writes), in one transaction, and the
data come from a seeded random generator, so every run produces the same clinic.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from dataclasses import dataclass

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from channels_hub.inbound import sandbox_reply
from channels_hub.services import channel_account_create
from clinics.models import Organization, Site, StaffRole, User
from clinics.services import organization_create, site_create, staff_create, user_set_superuser
from consent.models import ConsentSource, Purpose
from consent.policy import may_contact
from consent.services import consent_grant, consent_revoke, consent_revoke_channel
from messaging.services import message_send
from patients.models import ChangeSource, Channel, ContactKind, ContactPoint, Patient, Sex
from patients.normalize import fold
from patients.selectors import portal_accounts
from patients.services import (
    contact_point_add,
    contact_point_invalidate,
    patient_create,
    portal_account_ensure,
)

ORG_SLUG = "clinica-aurora"
DEMO_PASSWORD = "aurora-demo-2026"  # noqa: S105  printed on purpose: a local demo login
SEED = 20260101
BIRTH_ANCHOR = dt.date(2026, 1, 1)  # birth dates do not move with the day the demo is loaded
STAFF = [
    # email, role, display name, site slugs
    ("admin@touchpoint.local", StaffRole.ADMIN, "Giulia Conti", ["roma-prati", "warszawa-mokotow"]),
    ("frontdesk.roma@touchpoint.local", StaffRole.FRONT_DESK, "Marco Ferri", ["roma-prati"]),
    ("clinician.warszawa@touchpoint.local", StaffRole.CLINICIAN, "dr Agnieszka Zielińska", ["warszawa-mokotow"]),
]
OPENING_HOURS = {
    "mon": [["08:00", "19:00"]], "tue": [["08:00", "19:00"]], "wed": [["08:00", "19:00"]],
    "thu": [["08:00", "19:00"]], "fri": [["08:00", "17:00"]], "sat": [["08:30", "13:00"]],
}
SITES = [
    {
        "name": "Roma Prati", "slug": "roma-prati", "time_zone": "Europe/Rome", "language": "it", "phone_region": "IT",
        "address": "Via Cola di Rienzo 212\n00192 Roma RM\nItalia", "phone": "+390639721100",
        "email": "roma@aurora.example.org", "opening_hours": OPENING_HOURS,
    },
    {
        "name": "Warszawa Mokotów", "slug": "warszawa-mokotow", "time_zone": "Europe/Warsaw", "language": "pl",
        "phone_region": "PL", "address": "ul. Puławska 145\n02-715 Warszawa\nPolska", "phone": "+48228451200",
        "email": "warszawa@aurora.example.org",
        "opening_hours": {**OPENING_HOURS, "fri": [["08:00", "19:00"]], "sat": [["09:00", "14:00"]]},
    },
]

IT_FEMALE = ["Giulia", "Francesca", "Chiara", "Sara", "Martina", "Valentina", "Alessia", "Elena", "Federica", "Silvia",
             "Paola", "Laura", "Roberta", "Anna", "Maria", "Lucia", "Ilaria", "Beatrice", "Noemi", "Aurora"]
IT_MALE = ["Marco", "Luca", "Giuseppe", "Francesco", "Alessandro", "Andrea", "Matteo", "Lorenzo", "Davide", "Simone",
           "Stefano", "Paolo", "Roberto", "Antonio", "Giovanni", "Fabio", "Nicola", "Emanuele", "Riccardo", "Tommaso"]
IT_FAMILY = ["Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino", "Greco",
             "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Costa", "Giordano", "Rizzo", "Lombardi", "Moretti",
             "Barbieri", "Fontana", "Santoro", "Mariani", "Rinaldi", "Caruso", "Ferrara", "Galli", "Martini", "Leone",
             "Longo", "Gentile", "Martinelli", "Vitale", "Lombardo", "Serra", "Coppola", "De Santis", "D'Angelo",
             "Marchetti", "Parisi", "Villa", "Conte", "Ferraro", "Ferri", "Fabbri", "Bianco", "Marini", "Grasso", "Valentini"]
PL_FEMALE = ["Anna", "Maria", "Katarzyna", "Małgorzata", "Agnieszka", "Barbara", "Ewa", "Krystyna", "Magdalena",
             "Joanna", "Aleksandra", "Zofia", "Monika", "Natalia", "Łucja", "Zuzanna", "Julia", "Marta", "Dorota", "Ewelina"]
PL_MALE = ["Piotr", "Krzysztof", "Andrzej", "Tomasz", "Paweł", "Jan", "Michał", "Marcin", "Jakub", "Adam",
           "Łukasz", "Mateusz", "Grzegorz", "Wojciech", "Mariusz", "Dariusz", "Kamil", "Szymon", "Bartosz", "Maciej"]
# (masculine, feminine) forms of Polish surnames.
PL_FAMILY = [("Nowak", "Nowak"), ("Kowalski", "Kowalska"), ("Wiśniewski", "Wiśniewska"), ("Wójcik", "Wójcik"),
             ("Kowalczyk", "Kowalczyk"), ("Kamiński", "Kamińska"), ("Lewandowski", "Lewandowska"),
             ("Zieliński", "Zielińska"), ("Szymański", "Szymańska"), ("Woźniak", "Woźniak"), ("Dąbrowski", "Dąbrowska"),
             ("Kozłowski", "Kozłowska"), ("Jankowski", "Jankowska"), ("Mazur", "Mazur"), ("Kwiatkowski", "Kwiatkowska"),
             ("Krawczyk", "Krawczyk"), ("Piotrowski", "Piotrowska"), ("Grabowski", "Grabowska"), ("Nowakowski", "Nowakowska"),
             ("Pawłowski", "Pawłowska"), ("Michalski", "Michalska"), ("Król", "Król"), ("Wieczorek", "Wieczorek"),
             ("Jabłoński", "Jabłońska"), ("Wróbel", "Wróbel"), ("Majewski", "Majewska"), ("Olszewski", "Olszewska"),
             ("Stępień", "Stępień"), ("Jaworski", "Jaworska"), ("Malinowski", "Malinowska")]
EN_FEMALE = ["Emma", "Olivia", "Sophie", "Emily", "Grace", "Hannah", "Charlotte", "Amelia", "Chloe", "Lucy"]
EN_MALE = ["James", "Oliver", "Jack", "Harry", "William", "Thomas", "George", "Daniel", "Samuel", "Michael"]
EN_FAMILY = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Walker", "Wright",
             "Thompson", "Evans", "Roberts", "Murphy", "O'Brien", "Kelly", "Clarke", "Hughes", "Miller", "Anderson"]
IT_MOBILE = ["320", "328", "329", "331", "333", "334", "338", "339", "340", "342", "345", "347", "348", "349", "366",
             "380", "388", "389", "392", "393"]
PL_MOBILE = ["501", "502", "505", "510", "512", "530", "535", "600", "601", "602", "605", "660", "664", "691", "693",
             "721", "725", "730", "781", "790", "880", "886"]
EMAIL_DOMAINS = ["example.com", "example.org", "example.net", "mail.example.it", "poczta.example.pl"]


@dataclass
class Person:
    given: str
    family: str
    sex: str
    language: str


class Command(BaseCommand):
    help = "Load the demo clinic (Clinica Aurora): two sites, three staff logins and ~200 patients. Idempotent."

    def handle(self, *args, **options):
        started = timezone.now()
        organization = Organization.objects.filter(slug=ORG_SLUG).first()
        if organization is not None:
            self.stdout.write(f"Demo data already loaded ({organization.name}); nothing to do.")
        else:
            with transaction.atomic():
                organization = Demo(random.Random(SEED)).load()  # noqa: S311  demo data, not secrets
            seconds = (timezone.now() - started).total_seconds()
            self.stdout.write(self.style.SUCCESS(f"Demo data loaded in {seconds:.1f} s."))
        self._print_logins(organization)

    def _print_logins(self, organization: Organization) -> None:
        port = os.environ.get("PORT", "8000")
        emails = ContactPoint.objects.filter(patient__organization=organization, kind=ContactKind.EMAIL,
                                             is_valid=True).values("value")
        portal = (  # the first portal account the demo made (the Romano family's)
            portal_accounts().filter(email__in=emails).order_by("pk").values_list("email", flat=True).first()
        )
        self.stdout.write("")
        self.stdout.write(f"Touchpoint: http://127.0.0.1:{port}/")
        for email, role, _name, _sites in STAFF:
            self.stdout.write(f"Staff login: {email} / {DEMO_PASSWORD}  ({role.label})")
        if portal:
            self.stdout.write(
                f"Patient portal: {portal}  (sign in with an emailed code; in `make run` the email is printed "
                "in the web output)"
            )


class Demo:
    """Builds the demo clinic. Every random choice comes from `rng`, so the result is reproducible."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.now = timezone.now().replace(microsecond=0)
        # The hand-written patients below use these; random ones must not collide with them.
        self.used_numbers = {"3475550142", "601555013", "3385550199", "512555077", "3405550111", "3495550112"}
        self.used_emails = {"francesca.romano@example.com", "tomasz.kowalczyk@example.org", "g.esposito@example.net",
                            "k.wisniewska@example.org", "emily.clarke@example.com"}
        self.mrn = 0

    # --- organisation -----------------------------------------------------------------------
    def load(self) -> Organization:
        org = organization_create(name="Clinica Aurora", slug=ORG_SLUG, default_language="en")
        self.sites = {spec["slug"]: site_create(organization=org, **spec) for spec in SITES}
        self.staff: dict[str, User] = {}
        for email, role, name, slugs in STAFF:
            member = staff_create(
                organization=org, email=email, password=DEMO_PASSWORD, role=role, display_name=name,
                sites=[self.sites[s] for s in slugs],
            )
            self.staff[role] = member.user
        user_set_superuser(user=self.staff[StaffRole.ADMIN])
        self.roma, self.warszawa = self.sites["roma-prati"], self.sites["warszawa-mokotow"]
        self._patients()
        self._channels()
        return org

    # --- channels: the sandbox provider, so `make run` needs no Twilio or mail server ------------
    def _channels(self) -> None:
        senders = {self.roma: ("+390612340000", "roma@aurora.example"),
                   self.warszawa: ("+48221230000", "warszawa@aurora.example")}
        for site, (number, address) in senders.items():
            for channel in ("sms", "whatsapp"):
                channel_account_create(site=site, channel=channel, provider="sandbox", sender=number)
            channel_account_create(site=site, channel="email", provider="sandbox", sender=address)
        # A few conversations, through the real pipeline: a welcome message to patients who agreed to
        # care messages by SMS, and one patient's question waiting in the staff inbox.
        consenting = [p for p in Patient.objects.filter(home_site=self.roma).order_by("pk")[:40]
                      if may_contact(p, "sms", "care")][:3]
        for patient in consenting:
            message_send(patient=patient, purpose="care", template="free_text", channel="sms",
                         context={"text": "Clinica Aurora: benvenuto! Da oggi riceverà qui i promemoria."},
                         idempotency_key=f"demo-welcome-{patient.pk}", urgent=True)
        if consenting:
            phone = consenting[0].contact_points.filter(kind="phone").values_list("value", flat=True).first()
            if phone:
                sandbox_reply(channel="sms", from_address=phone, to_address=senders[self.roma][0],
                              body="Buongiorno, posso portare anche mia figlia alla visita?")

    # --- people -----------------------------------------------------------------------------
    def _person(self, site: Site) -> Person:
        rng = self.rng
        if rng.random() < 0.12:
            female = rng.random() < 0.5
            return Person(rng.choice(EN_FEMALE if female else EN_MALE), rng.choice(EN_FAMILY),
                          Sex.FEMALE if female else Sex.MALE, "en")
        female = rng.random() < 0.55
        if site.phone_region == "PL":
            masculine, feminine = rng.choice(PL_FAMILY)
            return Person(rng.choice(PL_FEMALE if female else PL_MALE), feminine if female else masculine,
                          Sex.FEMALE if female else Sex.MALE, "pl")
        return Person(rng.choice(IT_FEMALE if female else IT_MALE), rng.choice(IT_FAMILY),
                      Sex.FEMALE if female else Sex.MALE, "it")

    def _birth_date(self, *, min_age: int = 18, max_age: int = 92) -> dt.date:
        return BIRTH_ANCHOR - dt.timedelta(days=self.rng.randint(min_age * 365, max_age * 365))

    def _mobile(self, site: Site) -> str:
        """A new mobile number, typed the way the front desk types it (national format)."""
        rng = self.rng
        while True:
            if site.phone_region == "PL":
                digits = rng.choice(PL_MOBILE) + f"{rng.randrange(10**6):06d}"
                typed = f"{digits[:3]} {digits[3:6]} {digits[6:]}"
                if rng.random() < 0.2:
                    typed = "+48 " + typed
            else:
                digits = rng.choice(IT_MOBILE) + f"{rng.randrange(10**7):07d}"
                typed = f"{digits[:3]} {digits[3:6]} {digits[6:]}"
                if rng.random() < 0.2:
                    typed = "+39 " + typed
            if digits not in self.used_numbers:
                self.used_numbers.add(digits)
                return typed

    def _landline(self, site: Site) -> str:
        rng = self.rng
        while True:
            if site.phone_region == "PL":
                digits = "22" + str(rng.randint(2, 9)) + f"{rng.randrange(10**6):06d}"
                typed = f"{digits[:2]} {digits[2:5]} {digits[5:7]} {digits[7:]}"
            else:
                digits = "06" + str(rng.randint(3, 9)) + f"{rng.randrange(10**7):07d}"
                typed = f"{digits[:2]} {digits[2:6]} {digits[6:]}"
            if digits not in self.used_numbers:
                self.used_numbers.add(digits)
                return typed

    def _email(self, person: Person) -> str:
        base = fold(f"{person.given}.{person.family}").replace(" ", "").replace("'", "")
        while True:
            suffix = "" if self.rng.random() < 0.5 else str(self.rng.randint(1, 99))
            email = f"{base}{suffix}@{self.rng.choice(EMAIL_DOMAINS)}"
            if email not in self.used_emails:
                self.used_emails.add(email)
                return email

    def _next_mrn(self, site: Site) -> str:
        self.mrn += 1
        return f"{'RP' if site.phone_region == 'IT' else 'WM'}-{10000 + self.mrn:06d}"

    # --- patients ---------------------------------------------------------------------------
    def _create(self, site: Site, person: Person, *, birth: dt.date, contacts: list[dict], mrn: bool = True,
                source: str = ChangeSource.IMPORT, actor: User | None = None, **fields) -> Patient:
        return patient_create(
            home_site=site, given_name=person.given, family_name=person.family, actor=actor, source=source,
            contact_points=contacts, mrn=self._next_mrn(site) if mrn else "", date_of_birth=birth, sex=person.sex,
            language=person.language, **fields,
        )

    def _regular(self, site: Site) -> Patient:
        rng = self.rng
        person = self._person(site)
        contacts: list[dict] = []
        mobile = self._mobile(site) if rng.random() < 0.9 else None
        if mobile:
            contacts.append({"kind": ContactKind.PHONE, "value": mobile, "label": "mobile"})
            if rng.random() < 0.4:
                contacts.append({"kind": ContactKind.WHATSAPP, "value": mobile})
        if rng.random() < 0.15 or not mobile:
            contacts.append({"kind": ContactKind.PHONE, "value": self._landline(site), "label": "home"})
        if rng.random() < 0.7:
            contacts.append({"kind": ContactKind.EMAIL, "value": self._email(person)})
        fields = {}
        if rng.random() < 0.08:
            fields["preferred_name"] = person.given[:3] if len(person.given) > 4 else person.given
        if not mobile:
            fields["preferred_channels"] = [Channel.EMAIL, Channel.SMS, Channel.WHATSAPP]
        staff_made = rng.random() < 0.2
        return self._create(
            site, person, birth=self._birth_date(), contacts=contacts, mrn=rng.random() < 0.85,
            source=ChangeSource.STAFF if staff_made else ChangeSource.IMPORT,
            actor=self._desk(site) if staff_made else None, **fields,
        )

    def _desk(self, site: Site) -> User:
        return self.staff[StaffRole.FRONT_DESK] if site.phone_region == "IT" else self.staff[StaffRole.ADMIN]

    def _patients(self) -> None:
        rng = self.rng
        patients: list[Patient] = []
        for i in range(192):
            patients.append(self._regular(self.roma if i % 9 < 5 else self.warszawa))

        # A parent and a child sharing the parent's mobile and email (one portal account for both).
        roma_parent = self._create(
            self.roma, Person("Francesca", "Romano", Sex.FEMALE, "it"), birth=dt.date(1984, 6, 2),
            contacts=[{"kind": ContactKind.PHONE, "value": "347 555 0142", "label": "mobile"},
                      {"kind": ContactKind.WHATSAPP, "value": "347 555 0142"},
                      {"kind": ContactKind.EMAIL, "value": "francesca.romano@example.com"}],
        )
        roma_child = self._create(
            self.roma, Person("Matteo", "Romano", Sex.MALE, "it"), birth=dt.date(2016, 9, 21),
            contacts=[{"kind": ContactKind.PHONE, "value": "+39 347 555 0142", "label": "madre"},
                      {"kind": ContactKind.EMAIL, "value": "Francesca.Romano@example.com"}],
            notes="Contact through the mother, Francesca Romano.",
        )
        warsaw_parent = self._create(
            self.warszawa, Person("Tomasz", "Kowalczyk", Sex.MALE, "pl"), birth=dt.date(1981, 2, 11),
            contacts=[{"kind": ContactKind.PHONE, "value": "601 555 013", "label": "mobile"},
                      {"kind": ContactKind.EMAIL, "value": "tomasz.kowalczyk@example.org"}],
        )
        warsaw_child = self._create(
            self.warszawa, Person("Zuzanna", "Kowalczyk", Sex.FEMALE, "pl"), birth=dt.date(2018, 4, 30),
            contacts=[{"kind": ContactKind.PHONE, "value": "601 555 013", "label": "ojciec"}],
        )

        # Duplicates for the merge screen: same phone and birth date, the name typed differently.
        dup_a = self._create(
            self.roma, Person("Giuseppe", "Esposito", Sex.MALE, "it"), birth=dt.date(1957, 3, 14),
            contacts=[{"kind": ContactKind.PHONE, "value": "338 555 0199"}],
        )
        dup_b = self._create(
            self.roma, Person("Giuseppe", "Espositto", Sex.MALE, "it"), birth=dt.date(1957, 3, 14), mrn=False,
            contacts=[{"kind": ContactKind.PHONE, "value": "+39 338-555-0199"},
                      {"kind": ContactKind.EMAIL, "value": "g.esposito@example.net"}],
            source=ChangeSource.STAFF, actor=self.staff[StaffRole.FRONT_DESK],
        )
        dup_c = self._create(
            self.warszawa, Person("Katarzyna", "Wiśniewska", Sex.FEMALE, "pl"), birth=dt.date(1979, 11, 5),
            contacts=[{"kind": ContactKind.PHONE, "value": "512 555 077"},
                      {"kind": ContactKind.EMAIL, "value": "k.wisniewska@example.org"}],
        )
        dup_d = self._create(
            self.warszawa, Person("Katarzyna", "Wisniewska", Sex.FEMALE, "pl"), birth=dt.date(1979, 11, 5), mrn=False,
            contacts=[{"kind": ContactKind.PHONE, "value": "+48 512 555 077"}],
            source=ChangeSource.STAFF, actor=self.staff[StaffRole.ADMIN],
        )

        # An English speaker in Rome whose old number bounced: kept, marked invalid, a new one added.
        expat = self._create(
            self.roma, Person("Emily", "Clarke", Sex.FEMALE, "en"), birth=dt.date(1990, 7, 19),
            contacts=[{"kind": ContactKind.PHONE, "value": "340 555 0111", "label": "old mobile"},
                      {"kind": ContactKind.EMAIL, "value": "emily.clarke@example.com"}],
            pronouns="she/her",
        )
        old = expat.contact_points.get(kind=ContactKind.PHONE)
        contact_point_invalidate(contact_point=old, reason="The provider reported the number as unreachable.")
        contact_point_add(patient=expat, kind=ContactKind.PHONE, value="349 555 0112", is_primary=True,
                          label="mobile", actor=self.staff[StaffRole.FRONT_DESK])
        contact_point_add(patient=expat, kind=ContactKind.WHATSAPP, value="349 555 0112",
                          actor=self.staff[StaffRole.FRONT_DESK])

        specials = [roma_parent, roma_child, warsaw_parent, warsaw_child, dup_a, dup_b, dup_c, dup_d, expat]
        patients.extend(specials)
        for patient in patients:
            self._consent_history(patient)

        # A few portal accounts (the Romano family shares one).
        for patient in [roma_parent, roma_child, expat, dup_c, *rng.sample(patients[:192], 8)]:
            portal_account_ensure(email=patient.contact_points.filter(kind="email", is_valid=True)
                                  .order_by("-is_primary", "pk").values_list("value", flat=True).first() or "")

    # --- consent ----------------------------------------------------------------------------
    def _consent_history(self, patient: Patient) -> None:
        """Imported consents, later changes at the desk and on the portal, some withdrawals."""
        rng = self.rng
        kinds = set(patient.contact_points.values_list("kind", flat=True))
        channels = [c for c, k in ((Channel.SMS, ContactKind.PHONE), (Channel.WHATSAPP, ContactKind.WHATSAPP),
                                   (Channel.EMAIL, ContactKind.EMAIL)) if k in kinds]
        at = self.now - dt.timedelta(days=rng.randint(200, 900), minutes=rng.randint(0, 600))
        desk = self._desk(patient.home_site)

        def later(max_days: int) -> dt.datetime:
            nonlocal at
            at = min(at + dt.timedelta(days=rng.randint(1, max_days), minutes=rng.randint(1, 600)),
                     self.now - dt.timedelta(minutes=5))
            return at

        for channel in channels:
            if channel == Channel.WHATSAPP:
                # WhatsApp needs an explicit opt-in: given at the desk.
                if rng.random() < 0.8:
                    consent_grant(patient=patient, channel=channel, purpose=Purpose.CARE, source=ConsentSource.STAFF,
                                  actor=desk, at=later(60), note="Asked at check-in")
                continue
            if rng.random() < 0.85:
                consent_grant(patient=patient, channel=channel, purpose=Purpose.CARE, source=ConsentSource.IMPORT,
                              at=later(5), note="Imported from the previous booking system")
            if rng.random() < 0.4:
                consent_grant(patient=patient, channel=channel, purpose=Purpose.SURVEYS, source=ConsentSource.IMPORT,
                              at=later(5))
        if Channel.EMAIL in channels and rng.random() < 0.3:
            consent_grant(patient=patient, channel=Channel.EMAIL, purpose=Purpose.MARKETING,
                          source=ConsentSource.PORTAL, at=later(120))
            if rng.random() < 0.35:
                consent_revoke(patient=patient, channel=Channel.EMAIL, purpose=Purpose.MARKETING,
                               source=ConsentSource.PORTAL, at=later(200), note="Unsubscribed from the newsletter")
        if Channel.SMS in channels:
            roll = rng.random()
            if roll < 0.06:
                consent_revoke_channel(patient=patient, channel=Channel.SMS, source=ConsentSource.KEYWORD,
                                       at=later(200), note="Replied STOP")
            elif roll < 0.12:
                consent_revoke(patient=patient, channel=Channel.SMS, purpose=Purpose.SURVEYS,
                               source=ConsentSource.STAFF, actor=desk, at=later(200), note="Asked at the desk")
