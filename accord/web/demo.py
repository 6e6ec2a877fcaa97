"""The demo company: Voyager Travel, a corporate travel agency, and a few hundred of its corporate clients.

Clients commit bookings for a year in advance; the committed amount and the 12-month revenue decide their
tier (the tiers, services, calendars and agreements come from `accord/agreements/fixtures/demo.yaml`).
Everything is drawn from one seeded random generator, so the same seed gives the same company.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import random
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test.utils import override_settings
from django.utils import timezone
from django.utils.text import slugify

from accord.agreements.models import Agreement
from accord.catalog.models import ApiCredential, Service
from accord.customers import tiers
from accord.customers.actions import do_override_tier
from accord.customers.models import Account, Commitment, Contact, ContactPoint, Tier, TierOverride
from accord.insight.demo import seed_orders
from accord.lib.db import bulk_update_rows

MANIFEST = Path(__file__).resolve().parents[1] / "agreements" / "fixtures" / "demo.yaml"
DEMO_USER = "demo"

PREFIXES = [
    "Alpine", "Atlas", "Aurora", "Baltic", "Blue", "Cedar", "Cobalt", "Crown", "Delta", "Ember", "Falcon", "Fjord",
    "Granite", "Harbor", "Helix", "Iris", "Juniper", "Keystone", "Lakeside", "Lumen", "Meridian", "Mistral", "Nimbus",
    "Nord", "Northwind", "Oakridge", "Orbit", "Pacific", "Pioneer", "Polar", "Quartz", "Redwood", "Riviera",
    "Sapphire", "Sterling", "Summit", "Tundra", "Unity", "Vertex", "Zenith",
]
CORES = [
    "Aerospace", "Analytics", "Architects", "Bank", "Biotech", "Capital", "Chemicals", "Consulting", "Energy",
    "Engineering", "Foods", "Health", "Hotels", "Insurance", "Legal", "Logistics", "Media", "Mining", "Motors",
    "Pharma", "Publishing", "Renewables", "Retail", "Robotics", "Semiconductors", "Shipping", "Software", "Steel",
    "Telecom", "Textiles",
]


@dataclass(frozen=True)
class Region:
    """Where a client is: its time zone, phone numbering and the legal forms of companies there."""

    timezone: str
    calling_code: str
    national_digits: int
    legal_forms: tuple[str, ...]
    weight: int


# A European agency: most clients in Europe, the rest in the Americas and Asia.
REGIONS = [
    Region("Europe/London", "44", 10, ("Ltd", "plc"), 14),
    Region("Europe/Berlin", "49", 10, ("GmbH", "AG"), 12),
    Region("Europe/Paris", "33", 9, ("SA", "SAS"), 10),
    Region("Europe/Madrid", "34", 9, ("SL", "SA"), 6),
    Region("Europe/Amsterdam", "31", 9, ("BV", "NV"), 6),
    Region("Europe/Rome", "39", 10, ("SpA", "Srl"), 5),
    Region("Europe/Zurich", "41", 9, ("AG", "SA"), 5),
    Region("Europe/Stockholm", "46", 9, ("AB",), 4),
    Region("America/New_York", "1", 10, ("Inc", "LLC", "Corp"), 10),
    Region("America/Chicago", "1", 10, ("Inc", "LLC"), 5),
    Region("America/Toronto", "1", 10, ("Inc", "Ltd"), 3),
    Region("America/Sao_Paulo", "55", 11, ("Ltda", "SA"), 3),
    Region("Asia/Singapore", "65", 8, ("Pte Ltd",), 5),
    Region("Asia/Tokyo", "81", 10, ("KK",), 4),
    Region("Asia/Kolkata", "91", 10, ("Pvt Ltd",), 3),
    Region("Asia/Dubai", "971", 9, ("LLC", "FZE"), 3),
]
FIRST = [
    "Ada", "Aiko", "Ben", "Chloé", "Dario", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jonas", "Kavya", "Lars",
    "Léa", "Maya", "Nils", "Olga", "Pablo", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen",
    "Yara", "Zoe",
]
LAST = [
    "Andersen", "Bianchi", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Horvat", "Ivanova", "Jansen",
    "Kowalski", "Larsen", "Moreau", "Müller", "Novak", "Okafor", "Petrov", "Rao", "Rossi", "Schmidt", "Silva",
    "Tanaka", "Weber", "Yilmaz",
]
TITLES = ["Travel manager", "CFO", "Office manager", "Procurement lead", "Executive assistant", "HR director"]

# Revenue over 12 months is Pareto-distributed. The 80/20 exponent is log 5 / log 4 = 1.16, but a sample of a
# few hundred misses the far tail; with 1.0 the top fifth of the demo's accounts brings close to 80% of revenue.
PARETO_ALPHA = 1.0
REVENUE_FLOOR = 60_000
REVENUE_CAP = 30_000_000
# Tiers are re-evaluated at these ages (days before now) to give every account a history.
HISTORY_DAYS = (540, 365, 180)


@dataclass
class DemoSummary:
    """What the seed created."""

    accounts: int
    contacts: int
    commitments: int
    per_tier: dict[str, int]
    manifest: str
    services: int = 0
    agreements: int = 0
    credentials: int = 0
    overrides: int = 0
    tickets: int = 0
    demo_user_created: bool = True


@dataclass
class _Client:
    """One generated account with its revenue path (oldest first) and its commitments by year."""

    account: Account
    region: Region
    revenues: list[Decimal]  # at each HISTORY_DAYS age, then now
    commitments: dict[int, Decimal]  # amount by calendar year
    average_booking: int


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _money(value: float) -> Decimal:
    return Decimal(str(round(value, 2))).quantize(Decimal("0.01"))


def _revenues(rng: random.Random, n: int) -> list[float]:
    """n Pareto draws, stratified so that even a small demo has its few very large clients."""
    draws = [max((i + rng.random()) / n, 1e-9) for i in range(n)]
    rng.shuffle(draws)
    revenues = [REVENUE_FLOOR * u ** (-1 / PARETO_ALPHA) for u in draws]
    # The far tail is cut to a plausible size for one client, without piling everyone there onto one figure.
    return [r if r <= REVENUE_CAP else REVENUE_CAP * rng.uniform(0.7, 1.0) for r in revenues]


def _unique_name(rng: random.Random, region: Region, used: set[str]) -> str:
    for _ in range(50):
        name = f"{rng.choice(PREFIXES)} {rng.choice(CORES)} {rng.choice(region.legal_forms)}"
        if name not in used:
            used.add(name)
            return name
    # Very large demos run out of combinations: number the rest.
    base, n = f"{rng.choice(PREFIXES)} {rng.choice(CORES)}", 2
    while f"{base} {n} {region.legal_forms[0]}" in used:
        n += 1
    name = f"{base} {n} {region.legal_forms[0]}"
    used.add(name)
    return name


def _unique_person(rng: random.Random, used: set[str]) -> str:
    for _ in range(50):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        if name not in used:
            used.add(name)
            return name
    n = 2
    while f"{name} ({n})" in used:
        n += 1
    used.add(f"{name} ({n})")
    return f"{name} ({n})"


def _phone(rng: random.Random, region: Region) -> str:
    digits = region.national_digits
    return f"+{region.calling_code}{rng.randint(2 * 10 ** (digits - 1), 10**digits - 1)}"


@contextlib.contextmanager
def _mail_stays_local() -> Iterator[None]:
    """Demo replies go to files under var/sent-mail, never to an SMTP server (their addresses are made up)."""
    if settings.EMAIL_BACKEND == "django.core.mail.backends.smtp.EmailBackend":
        with override_settings(EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend"):
            yield
    else:
        yield


def _apply_manifest() -> str:
    """Calendars, tiers, services, partners and agreements from the demo manifest."""
    # Imported here: the manifest loader (pydantic models, YAML) is heavy and only the seed needs it.
    from accord.lib.manifest import apply_manifest

    return apply_manifest(MANIFEST.read_text(encoding="utf-8"), source=str(MANIFEST)).summary()


# The seed's phases, for a progress bar: the five fixed ones around one tier evaluation per point in time.
STEPS = 7 + len(HISTORY_DAYS) + 1


def seed(accounts: int = 300, rng_seed: int = 7, progress: Callable[[str], None] | None = None) -> DemoSummary:
    """Create the demo company in a database without accounts; deterministic for a given seed.

    Only the API keys differ between two runs with the same seed: they are secrets, drawn from the OS.
    `progress` is called with a label as each of the STEPS phases starts.
    """
    if accounts < 1:
        raise ValueError("the demo needs at least one account")
    if Account.objects.exists():
        raise ValueError("accounts exist already; the demo fills an empty database")
    step = progress or (lambda label: None)
    rng = random.Random(rng_seed)
    now = timezone.now()
    with _mail_stays_local(), transaction.atomic():
        step("manifest")
        manifest = _apply_manifest()
        demo, created_user = _users()
        managers = list(get_user_model().objects.filter(username__in=MANAGERS).order_by("username"))
        step("accounts")
        clients = _accounts(rng, accounts, managers, now)
        step("commitments")
        n_commitments = _commitments(clients)
        step("contacts")
        n_contacts = _contacts(rng, clients)
        rules = list(Tier.objects.order_by("rank"))
        moments = [now - dt.timedelta(days=d) for d in HISTORY_DAYS] + [now]
        overrides = _history(clients, rules, moments, demo, step)
        step("overrides")
        overrides += _current_overrides(clients, rules, moments, demo)
        step("API keys")
        n_credentials = _credentials(rng, clients, now)
        step("tickets")
        tickets = _demo_tickets(rng, [c.account for c in clients])
        seed_orders([c.account for c in clients], rng)  # and the insight pages' fit, topics and health
    per_tier = {t.name: t.accounts.count() for t in Tier.objects.order_by("rank")}
    untiered = Account.objects.filter(tier__isnull=True).count()
    if untiered:
        per_tier["no tier"] = untiered
    return DemoSummary(
        accounts=len(clients), contacts=n_contacts, commitments=n_commitments, per_tier=per_tier, manifest=manifest,
        services=Service.objects.count(), agreements=Agreement.objects.count(), credentials=n_credentials,
        overrides=overrides, tickets=tickets, demo_user_created=created_user,
    )


MANAGERS = ("ingrid", "kofi", "maria")


def _users() -> tuple[Any, bool]:
    """The demo/demo superuser (an existing `demo` keeps its password) and three account managers."""
    user_model = get_user_model()
    demo = user_model.objects.filter(username=DEMO_USER).first()
    created = demo is None
    if demo is None:
        demo = user_model.objects.create_superuser(DEMO_USER, "demo@voyager.example", "demo")
    for name in MANAGERS:
        if not user_model.objects.filter(username=name).exists():
            user_model.objects.create_user(name, f"{name}@voyager.example", is_staff=True)
    return demo, created


def _accounts(rng: random.Random, n: int, managers: list[Any], now: dt.datetime) -> list[_Client]:
    used: set[str] = set()
    clients: list[_Client] = []
    weights = [r.weight for r in REGIONS]
    for i, revenue in enumerate(_revenues(rng, n)):
        region = rng.choices(REGIONS, weights)[0]
        # A few small accounts are people: executives who book their private travel with the agency too.
        kind = Account.Kind.PERSON if revenue < 120_000 and rng.random() < 0.06 else Account.Kind.ORGANISATION
        name = _unique_person(rng, used) if kind == Account.Kind.PERSON else _unique_name(rng, region, used)
        if kind == Account.Kind.PERSON:
            revenue *= rng.uniform(0.1, 0.3)
        # Revenue path: half-yearly growth around +5%, so most clients grew into their tier and a few shrank.
        path = [revenue]
        for _ in HISTORY_DAYS:
            path.append(path[-1] / math.exp(rng.gauss(0.05, 0.2)))
        revenues = [_money(max(v, 1000.0)) for v in reversed(path)]
        # Cost to serve: mostly a healthy margin, but some small clients cost more than they bring.
        ratio = rng.uniform(1.0, 1.4) if revenue < 150_000 and rng.random() < 0.1 else rng.uniform(0.45, 0.85)
        account = Account(
            external_id=f"VOY-{1000 + i}", name=name, kind=kind, timezone=region.timezone,
            revenue_12m=revenues[-1], cost_to_serve_12m=_money(revenue * ratio),
            owner=managers[i % len(managers)] if managers else None,
        )
        # Clients commit a share of their expected bookings for the calendar year; most did so last year too.
        commitments = {now.year: _money(revenue * rng.uniform(0.2, 0.6))}
        if rng.random() < 0.85:
            commitments[now.year - 1] = _money(float(revenues[1]) * rng.uniform(0.2, 0.6))
        clients.append(_Client(account, region, revenues, commitments, rng.randint(350, 900)))
    Account.objects.bulk_create([c.account for c in clients], batch_size=500)
    return clients


def _commitments(clients: list[_Client]) -> int:
    rows = [
        Commitment(
            account=client.account, period_start=dt.date(year, 1, 1), period_end=dt.date(year, 12, 31),
            amount=amount, volume=max(1, int(amount / client.average_booking)), unit="bookings",
            note=f"{year} booking commitment",
        )
        for client in clients
        for year, amount in sorted(client.commitments.items())
    ]
    Commitment.objects.bulk_create(rows, batch_size=500)
    return len(rows)


def _contacts(rng: random.Random, clients: list[_Client]) -> int:
    """1-3 contacts per client, each with an e-mail address and a phone number in the client's country."""
    contacts: list[Contact] = []
    addresses: list[tuple[str, str]] = []
    used: set[str] = set()
    for client in clients:
        acct = client.account
        if acct.kind == Account.Kind.PERSON:
            # A private client is their own contact, with a personal address.
            people = [(acct.name, "", f"{slugify(_ascii(acct.name))}.{acct.pk}@mail.example")]
        else:
            domain = slugify(_ascii(acct.name)) + ".example"
            people = []
            for _ in range(rng.randint(1, 3)):
                first, last = rng.choice(FIRST), rng.choice(LAST)
                people.append((f"{first} {last}", rng.choice(TITLES), _ascii(f"{first}.{last}@{domain}").lower()))
        for name, title, email in people:
            phone = _phone(rng, client.region)
            if email in used or phone in used:
                continue
            used.update((email, phone))
            contacts.append(
                Contact(account=acct, name=name, title=title, external_id=f"{acct.external_id}-C{len(contacts) + 1}")
            )
            addresses.append((email, phone))
    Contact.objects.bulk_create(contacts, batch_size=500)
    points = []
    for contact, (email, phone) in zip(contacts, addresses, strict=True):
        points.append(ContactPoint(contact=contact, kind=ContactPoint.Kind.EMAIL, value=email, primary=True))
        points.append(ContactPoint(contact=contact, kind=ContactPoint.Kind.PHONE, value=phone, primary=True))
    ContactPoint.objects.bulk_create(points, batch_size=500)
    return len(contacts)


def _rules_tier(client: _Client, rules: list[Tier], moments: list[dt.datetime], i: int) -> Tier | None:
    """The tier the rules gave the client at moments[i], from the figures it had then."""
    committed = client.commitments.get(timezone.localdate(moments[i]).year, Decimal(0))
    return tiers.decide(rules, committed, client.revenues[i], None).tier


def _history(
    clients: list[_Client], rules: list[Tier], moments: list[dt.datetime], demo: Any, step: Callable[[str], None]
) -> int:
    """Evaluate tiers as they were 18, 12 and 6 months ago, then now; returns the overrides made on the way.

    Revenue is set to each past figure before each evaluation, so the history shows clients growing into (and
    a few dropping out of) their tiers. One client had a trial upgrade between two evaluations, since ended.
    """

    def steady_tier(client: _Client) -> Tier | None:
        seen = {_rules_tier(client, rules, moments, i) for i in range(len(moments))}
        return seen.pop() if len(seen) == 1 else None

    # The trial goes to a client that stayed in one tier below the top the whole time.
    trial = next((c for c in clients if steady_tier(c) in rules[1:]), None)
    made = 0
    for i, moment in enumerate(moments):
        step(f"tiers as of {timezone.localdate(moment)}")
        bulk_update_rows(Account, ["revenue_12m"], [(c.revenues[i], c.account.pk) for c in clients])
        tiers.recompute(now=moment)
        if trial is not None and i == 1:
            # Recorded as it happened, months ago: do_override_tier only takes expiries in the future.
            tier = _rules_tier(trial, rules, moments, i)
            assert tier is not None
            started = moment + dt.timedelta(days=60)
            TierOverride.objects.create(
                account=trial.account, tier=rules[rules.index(tier) - 1], created_by=demo, created_at=started,
                reason="Trial: faster response times during their ERP migration",
                expires_at=started + dt.timedelta(days=90),
            )
            trial_only = Account.objects.filter(pk=trial.account.pk)
            tiers.recompute(trial_only, now=started)
            tiers.recompute(trial_only, now=started + dt.timedelta(days=91))  # the night after it expired
            made += 1
    return made


def _current_overrides(clients: list[_Client], rules: list[Tier], moments: list[dt.datetime], demo: Any) -> int:
    """Two live overrides: a pilot lifted to the top tier, and a client the rules moved down kept where it was."""
    if len(rules) < 2:
        return 0
    rank = {t.pk: i for i, t in enumerate(rules)}
    tier_of = dict(Account.objects.filter(tier__isnull=False).values_list("pk", "tier_id"))
    taken = set(TierOverride.objects.values_list("account_id", flat=True))
    now, made = timezone.now(), 0
    pilot = next((c for c in clients if tier_of.get(c.account.pk) == rules[1].pk and c.account.pk not in taken), None)
    if pilot is not None:
        do_override_tier(pilot.account, rules[0], "Strategic pilot: new regional contract signed",
                         now + dt.timedelta(days=90), demo)
        taken.add(pilot.account.pk)
        made += 1
    for client in clients:
        before, after = _rules_tier(client, rules, moments, -2), tier_of.get(client.account.pk)
        if client.account.pk in taken or before is None or after is None or rank[after] <= rank[before.pk]:
            continue
        do_override_tier(client.account, before, "Retention: kept while their travel policy is renegotiated",
                         now + dt.timedelta(days=60), demo)
        made += 1
        break
    return made


def _credentials(rng: random.Random, clients: list[_Client], now: dt.datetime) -> int:
    """API keys for the five biggest clients' booking integrations; the biggest one rotated its key."""
    biggest = sorted(clients, key=lambda c: c.account.revenue_12m, reverse=True)[:5]
    count = 0
    for i, client in enumerate(biggest):
        if i == 0:
            old, _key = ApiCredential.issue(client.account, "booking integration (old key)")
            ApiCredential.objects.filter(pk=old.pk).update(
                created_at=now - dt.timedelta(days=400), revoked_at=now - dt.timedelta(days=200),
                last_used_at=now - dt.timedelta(days=201),
            )
            count += 1
        cred, _key = ApiCredential.issue(client.account, "booking integration")
        count += 1
        if i < 4:
            used = now - dt.timedelta(minutes=rng.randint(5, 3 * 24 * 60))
            ApiCredential.objects.filter(pk=cred.pk).update(last_used_at=used)
    return count


SUBJECTS = [
    ("Booking for the sales kick-off failed", "urgent"), ("Change of travel dates for our team", "normal"),
    ("Invoice for October bookings", "low"), ("Fare search is very slow this morning", "high"),
    ("Cancel booking for next week", "normal"), ("Seat upgrade for our CEO", "high"),
    ("Hotel missing from the itinerary", "normal"), ("Refund for the cancelled flight", "normal"),
]


def _demo_tickets(rng: random.Random, accounts: list[Account]) -> int:
    """A desk with a day of work in it: tickets from several channels, some answered, some waiting."""
    from accord.desk import actions
    from accord.desk.actions import Inbound

    agent = get_user_model().objects.get(username=DEMO_USER)
    now = timezone.now()
    first = [a.pk for a in accounts[:120]]
    biggest = [a.pk for a in sorted(accounts, key=lambda a: -a.revenue_12m)[:10]]
    fresh = Account.objects.select_related("tier").in_bulk(first + biggest)  # tiers as the history left them
    count = 0
    for i in range(40):
        account = fresh[rng.choice(first if i % 3 else biggest)]
        contact = account.contacts.first()
        if contact is None:
            continue
        subject, priority = rng.choice(SUBJECTS)
        channel = rng.choice(["email", "email", "web", "phone", "social"])
        address = contact.phones[0] if channel == "phone" and contact.phones else contact.emails[0]
        ticket = actions.do_open_ticket(
            Inbound(channel="phone" if address.startswith("+") else channel, subject=subject,
                    body_text="Hello, could you help us with this please?", from_address=address,
                    priority=priority, received_at=now - dt.timedelta(minutes=rng.randint(5, 3 * 24 * 60))),
            contact=contact, account=account,
        )
        count += 1
        if i % 4 == 0:
            actions.do_reply(ticket, agent, "Thank you, we are looking into it.", at=timezone.now())
        if i % 7 == 0:
            actions.do_set_status(ticket, "pending")
    return count
