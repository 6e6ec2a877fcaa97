"""Simulated data: the rows scenarios create (flagged `simulated`), and removing them without touching real ones.

`accord scenario rta` makes up a service, a calendar, accounts with their keys and agreements, a policy and,
in an empty database, tiers; each carries `simulated=True` and every staff page and API that lists them labels
them so. `do_remove_simulated` (`accord scenario clean`) deletes them, what depends on them only (pools, keys,
objectives, the policy's gateway action and audit events, the measurements of the simulated services), and
nothing real: a simulated row that a real row still needs (a real agreement on the simulated service, a real
ticket of a simulated account, a real account in a simulated tier) is kept and reported with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Q

from accord.agreements.models import Agreement, BusinessCalendar, Objective
from accord.catalog.models import ApiCredential, Pool, Service
from accord.customers.models import Account, Tier, TierOverride
from accord.gateway.models import GatewayAction, LivePool, LiveTraffic, Rollup
from accord.gateway.snapshot import account_key
from accord.governance.models import AuditEvent, Policy

SINGULAR = {"policies": "policy", "agreements": "agreement", "services": "service", "accounts": "account",
            "calendars": "calendar", "tiers": "tier"}


@dataclass
class Removal:
    """What `do_remove_simulated` removed (or would remove, in a dry run), by kind, and what it kept and why."""

    removed: dict[str, list[str]] = field(default_factory=dict)  # kind -> names
    rows: dict[str, int] = field(default_factory=dict)  # dependent rows -> how many
    kept: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def nothing(self) -> bool:
        return not any(self.removed.values()) and not any(self.rows.values())

    def lines(self) -> list[str]:
        """For people: one line per kind of row, then what was kept."""
        verb = "would remove" if self.dry_run else "removed"
        out = []
        for kind, names in self.removed.items():
            if names:
                shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
                noun = SINGULAR[kind] if len(names) == 1 else kind
                out.append(f"{verb} {len(names):,} simulated {noun}: {shown}")
        for kind, n in self.rows.items():
            if n:
                out.append(f"{verb} {n:,} {kind}")
        out += [f"kept {reason}" for reason in self.kept]
        if self.nothing and not self.kept:
            out.append("nothing simulated to remove")
        return out


def do_remove_simulated(dry_run: bool = False) -> Removal:
    """Delete every simulated row and what depends only on it, in one transaction; with `dry_run`, roll it back
    and report what would have gone. Real rows are never deleted or changed."""
    report = Removal(dry_run=dry_run)
    with transaction.atomic():
        policies = list(Policy.objects.filter(simulated=True))
        report.removed["policies"] = [p.name for p in policies]
        names = [p.name for p in policies]
        report.rows["gateway actions of those policies"] = GatewayAction.objects.filter(
            name__in=[p.action_name for p in policies]).delete()[0]
        report.rows["audit events of those policies"] = AuditEvent.objects.filter(
            Q(policy__in=policies) | Q(policy__isnull=True, subject__in=names)).delete()[0]
        Policy.objects.filter(pk__in=[p.pk for p in policies]).delete()

        accounts = list(Account.objects.filter(simulated=True).order_by("tier__rank", "external_id"))
        with_tickets = set(Account.objects.filter(pk__in=[a.pk for a in accounts], tickets__isnull=False)
                           .values_list("pk", flat=True))
        for a in accounts:
            if a.pk in with_tickets:
                report.kept.append(f"simulated account {a.external_id or a.pk}: it has support tickets, which would "
                                   "lose their account")
        accounts = [a for a in accounts if a.pk not in with_tickets]
        # an agreement of a simulated account promises nothing real, whoever flagged it
        agreements = Agreement.objects.filter(Q(simulated=True) | Q(account__in=accounts)).exclude(
            account__in=with_tickets)
        report.removed["agreements"] = list(agreements.values_list("name", flat=True))
        objectives = Objective.objects.filter(agreement__in=agreements)
        report.rows["objectives of those agreements"] = objectives.count()
        subjects = [f"{a}/{o}" for a, o in objectives.values_list("agreement__name", "name")]
        report.rows["audit events of their error budgets"] = AuditEvent.objects.filter(
            policy__isnull=True, subject__in=subjects,
            kind__in=[AuditEvent.Kind.BURN_ALERT, AuditEvent.Kind.BURN_RESOLVED]).delete()[0]
        agreement_ids = list(agreements.values_list("pk", flat=True))
        agreements.delete()

        services = list(Service.objects.filter(simulated=True))
        for s in list(services):
            real = sorted(set(Agreement.objects.filter(Q(services=s) | Q(objectives__service=s))
                              .exclude(pk__in=agreement_ids).values_list("name", flat=True)))
            if real:
                services.remove(s)
                report.kept.append(f"simulated service {s.name}: the agreement(s) {', '.join(real)} refer to it")
        service_names = [s.name for s in services]
        report.removed["services"] = service_names
        report.rows["pools of those services"] = Pool.objects.filter(service__in=services).count()
        # the measurements of simulated services (every account's rows and the all-accounts rows)
        report.rows["rollup rows of those services"] = Rollup.objects.filter(service__in=service_names).delete()[0]
        report.rows["live rows of those services"] = (
            LiveTraffic.objects.filter(service__in=service_names).delete()[0]
            + LivePool.objects.filter(service__in=service_names).delete()[0])
        Service.objects.filter(pk__in=[s.pk for s in services]).delete()

        report.removed["accounts"] = [a.external_id or str(a.pk) for a in accounts]
        report.rows["API keys of those accounts"] = ApiCredential.objects.filter(account__in=accounts).count()
        keys = [account_key(a.external_id, a.pk) for a in accounts]
        elsewhere = Rollup.objects.filter(account__in=keys).exclude(
            service__in=Service.objects.filter(simulated=True).values("name")).count()
        if elsewhere:  # their traffic is in those services' all-accounts totals too, which cannot be taken apart
            report.kept.append(f"{elsewhere:,} rollup rows of simulated accounts on real services: those services' "
                               "all-accounts totals include them")
        Account.objects.filter(pk__in=[a.pk for a in accounts]).delete()

        calendars = []
        for c in BusinessCalendar.objects.filter(simulated=True):
            users = sorted(set(Agreement.objects.filter(calendar=c).values_list("name", flat=True)))
            if users or Policy.objects.filter(schedule=c).exists():
                report.kept.append(f"simulated calendar {c.name}: " + (
                    f"the agreement(s) {', '.join(users)} use it" if users else "a policy's schedule uses it"))
                continue
            calendars.append(c)
        report.removed["calendars"] = [c.name for c in calendars]
        BusinessCalendar.objects.filter(pk__in=[c.pk for c in calendars]).delete()

        tiers = []
        for t in Tier.objects.filter(simulated=True):
            if (Account.objects.filter(tier=t).exists() or Agreement.objects.filter(tier=t).exists()
                    or TierOverride.objects.filter(tier=t).exists()):
                report.kept.append(f"simulated tier {t.name}: accounts, agreements or tier overrides still use it")
                continue
            tiers.append(t)
        report.removed["tiers"] = [t.name for t in tiers]
        Tier.objects.filter(pk__in=[t.pk for t in tiers]).delete()
        if dry_run:
            transaction.set_rollback(True)
    return report
