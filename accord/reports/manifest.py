"""What `accord apply` checks for reports: an availability promise the partners make impossible.

An agreement's availability objective on a service (or, without a service, on every service of the agreement)
cannot be kept above the composite of what the partners those services depend on promise: all are needed, so
their availabilities multiply (serial). Such a promise is applied but flagged, with its path.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from accord.catalog.models import PartnerService
from accord.lib.manifest.engine import Check

from .partners import serial


def _partners(check: Check) -> dict[str, tuple[Decimal, set[str]]]:
    """Partner -> (promised %, the services depending on it): the file's, over the database's."""
    out = {p.name: (p.promised_availability, set(p.services.values_list("name", flat=True)))
           for p in PartnerService.objects.prefetch_related("services")}
    for spec in check.items("partners"):
        out[spec.name] = (spec.promised_availability, set(spec.services))
    return out


def partner_promises(check: Check) -> None:
    partners = _partners(check)
    for path, agreement in check.each("agreements"):
        for j, objective in enumerate(agreement.objectives):
            if objective.kind != "availability":
                continue
            services = {objective.service} if objective.service else set(agreement.services)
            needed = sorted((name, promised) for name, (promised, used) in partners.items() if used & services)
            if not needed:
                continue
            bound = serial(Fraction(p) / 100 for _n, p in needed) * 100
            if Fraction(objective.target) > bound:
                shown = Decimal(bound.numerator) / Decimal(bound.denominator)
                check.warn(f"{path}.objectives[{j}].target",
                           f"{objective.target} % cannot be kept: the partners it depends on "
                           f"({', '.join(f'{n} {p} %' for n, p in needed)}) promise at most "
                           f"{shown.quantize(Decimal('0.0001'))} % together")
