"""The `services` and `partners` sections of the manifest: the service catalog as code."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db.models import Q
from pydantic import Field, StrictBool, StrictInt, StringConstraints

from accord.lib.manifest import Check, Kind
from accord.lib.manifest.fields import Name, Spec, Text, drop_empty, num

from .models import (
    Endpoint,
    Operation,
    PartnerService,
    Pool,
    Service,
    validate_base_path,
    validate_path_pattern,
)
from .uses import objectives


class OperationSpec(Spec):
    """A business process of a service: a method and a path pattern."""

    name: Name
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"]
    path: Annotated[str, StringConstraints(max_length=300)]
    title: Text = ""


class EndpointSpec(Spec):
    """One upstream address of a pool."""

    url: Annotated[str, StringConstraints(max_length=300)]
    weight: StrictInt = Field(default=1, ge=1, le=1000)
    enabled: StrictBool = True


class PoolSpec(Spec):
    """A group of endpoints of a service."""

    name: Name
    role: Literal["primary", "standby"] = "primary"
    capacity: StrictInt = Field(ge=1, le=2_147_483_647)
    endpoints: list[EndpointSpec] = []


class ServiceSpec(Spec):
    """A run-time service with its operations and pools."""

    name: Name
    title: Text = ""
    base_path: Annotated[str, StringConstraints(max_length=200)]
    owner: Text = ""
    cost_per_instance_hour: Decimal = Field(default=Decimal(0), ge=0, max_digits=10, decimal_places=4,
                                            allow_inf_nan=False)
    allow_anonymous: StrictBool = False
    forward_credentials: StrictBool = False
    operations: list[OperationSpec] = []
    pools: list[PoolSpec] = []


class PartnerSpec(Spec):
    """A third party's service ours depend on."""

    name: Name
    provider: Text = ""
    promised_availability: Decimal = Field(ge=0, le=100, max_digits=7, decimal_places=4, allow_inf_nan=False)
    services: list[Name] = []


def _endpoint_dict(url: str, weight: int, enabled: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"url": url}
    if weight != 1:
        out["weight"] = weight
    if not enabled:
        out["enabled"] = False
    return out


def _service_dict(name: str, title: str, base_path: str, owner: str, cost: Decimal, anonymous: bool,
                  forward_credentials: bool, operations: list[dict[str, Any]],
                  pools: list[dict[str, Any]]) -> dict[str, Any]:
    return drop_empty(
        {
            "name": name, "title": title, "base_path": base_path, "owner": owner,
            "cost_per_instance_hour": num(cost) or None, "allow_anonymous": anonymous,
            "forward_credentials": forward_credentials,
            "operations": [drop_empty(o, keep=("name", "method", "path"))
                           for o in sorted(operations, key=lambda o: o["name"])],
            "pools": [{**p, "endpoints": sorted(p["endpoints"], key=lambda e: e["url"])}
                      for p in sorted(pools, key=lambda p: p["name"])],
        },
        keep=("name", "base_path"),
    )


def service_dict_from_spec(s: ServiceSpec) -> dict[str, Any]:
    """A service of the file in canonical form."""
    return _service_dict(
        s.name, s.title, s.base_path, s.owner, s.cost_per_instance_hour, s.allow_anonymous, s.forward_credentials,
        [{"name": o.name, "method": o.method, "path": o.path, "title": o.title} for o in s.operations],
        [{"name": p.name, "role": p.role, "capacity": p.capacity,
          "endpoints": [_endpoint_dict(e.url, e.weight, e.enabled) for e in p.endpoints]} for p in s.pools],
    )


def service_dict_from_db(s: Service) -> dict[str, Any]:
    """A stored service in canonical form."""
    return _service_dict(
        s.name, s.title, s.base_path, s.owner, s.cost_per_instance_hour, s.allow_anonymous, s.forward_credentials,
        [{"name": o.name, "method": o.method, "path": o.path_pattern, "title": o.title} for o in s.operations.all()],
        [{"name": p.name, "role": p.role, "capacity": p.capacity,
          "endpoints": [_endpoint_dict(e.url, e.weight, e.enabled) for e in p.endpoints.all()]} for p in s.pools.all()],
    )


def _objectives_left_behind(check: Check, where: Q) -> list[str]:
    """'agreement/objective' of the objectives (matching `where`) a change would delete with the service or
    operation they are scoped to (they cascade) that the file does not speak for: their agreement is not in it, and
    not pruned."""
    found = objectives(where)  # agreements' objectives, as that app registered them (catalog/uses.py)
    if found is None or check.pruned("agreements"):
        return []  # every agreement the file omits goes anyway; the file's own are checked against its services
    in_file = [a.name for a in check.loaded.items.get("agreements", [])]
    return [f"{a}/{o}" for a, o in found.exclude(agreement__name__in=in_file)
            .order_by("agreement__name", "name").values_list("agreement__name", "name")]


class ServiceKind(Kind, section="services", singular="service", spec=ServiceSpec, model=Service):
    """Services with their operations, pools and endpoints; the file's lists replace the stored ones."""

    def check(self, check: Check) -> None:
        check.unique_in("services", lambda s: s.base_path, "base_path")
        taken: dict[str, str] = {}
        if not check.pruned("services"):
            names = [s.name for s in check.items("services")]
            taken = dict(Service.objects.exclude(name__in=names).values_list("base_path", "name"))
        url = URLValidator(schemes=["http", "https"])
        for p, svc in check.each("services"):
            try:
                validate_base_path(svc.base_path)
            except DjangoValidationError as e:
                check.err(f"{p}.base_path", e.messages[0])
            if svc.base_path in taken:
                check.err(f"{p}.base_path", f"'{svc.base_path}' is the base path of service '{taken[svc.base_path]}'")
            check.unique(f"{p}.operations", svc.operations, lambda o: o.name)
            check.unique(f"{p}.operations", svc.operations, lambda o: (o.method, o.path), "path",
                         shown=lambda k: f"{k[0]} {k[1]}")
            for j, op in enumerate(svc.operations):
                try:
                    validate_path_pattern(op.path)
                except DjangoValidationError as e:
                    check.err(f"{p}.operations[{j}].path", e.messages[0])
            check.unique(f"{p}.pools", svc.pools, lambda o: o.name)
            for j, pool in enumerate(svc.pools):
                check.unique(f"{p}.pools[{j}].endpoints", pool.endpoints, lambda e: e.url, "url")
                for k, ep in enumerate(pool.endpoints):
                    try:
                        url(ep.url)
                    except DjangoValidationError:
                        check.err(f"{p}.pools[{j}].endpoints[{k}].url", f"'{ep.url}' is not an http(s) URL")
            stored_ops = set(Operation.objects.filter(service__name=svc.name).values_list("name", flat=True))
            removed = sorted(stored_ops - {o.name for o in svc.operations})
            if removed:
                lost = _objectives_left_behind(check, Q(operation__service__name=svc.name,
                                                        operation__name__in=removed))
                if lost:
                    check.err(f"{p}.operations", f"removing operation(s) {', '.join(removed)} would delete the "
                                                 f"objective(s) {', '.join(lost)} scoped to them; change those "
                                                 "agreements in the same file, or keep the operation(s)")
        if check.pruned("services"):
            gone = Service.objects.exclude(name__in=[s.name for s in check.items("services")])
            lost = _objectives_left_behind(check, Q(service__in=gone))
            if lost:
                check.err("services", f"--prune would remove services that the objective(s) {', '.join(lost)} are "
                                      "scoped to (deleting those objectives); change those agreements in the same file")

    def canonical(self, item: ServiceSpec) -> dict[str, Any]:
        return service_dict_from_spec(item)

    def stored(self, name: str) -> dict[str, Any] | None:
        svc = Service.objects.filter(name=name).prefetch_related("operations", "pools__endpoints").first()
        return service_dict_from_db(svc) if svc else None

    def write(self, items: list[ServiceSpec]) -> None:
        # Base paths are unique: park them so two services can swap theirs.
        for i, s in enumerate(items):
            Service.objects.filter(name=s.name).update(base_path=f"/__accord_parked_{i}")
        for s in items:
            _write_service(s)

    def export(self) -> tuple[list[dict[str, Any]], list[str]]:
        rows, notes = self.real(Service.objects.order_by("name"))
        return [service_dict_from_db(s) for s in rows.prefetch_related("operations", "pools__endpoints")], notes


def _write_service(s: ServiceSpec) -> None:
    svc, _ = Service.objects.update_or_create(
        name=s.name,
        defaults={"title": s.title, "base_path": s.base_path, "owner": s.owner,
                  "cost_per_instance_hour": s.cost_per_instance_hour, "allow_anonymous": s.allow_anonymous,
                  "forward_credentials": s.forward_credentials},
    )
    svc.operations.exclude(name__in=[o.name for o in s.operations]).delete()
    for i, o in enumerate(s.operations):  # park routes first so two operations can swap them
        svc.operations.filter(name=o.name).update(path_pattern=f"/__accord_parked_{i}")
    for o in s.operations:
        Operation.objects.update_or_create(
            service=svc, name=o.name, defaults={"method": o.method, "path_pattern": o.path, "title": o.title}
        )
    svc.pools.exclude(name__in=[p.name for p in s.pools]).delete()
    for p in s.pools:
        pool, _ = Pool.objects.update_or_create(service=svc, name=p.name, defaults={"role": p.role, "capacity": p.capacity})
        pool.endpoints.exclude(url__in=[e.url for e in p.endpoints]).delete()
        for e in p.endpoints:
            Endpoint.objects.update_or_create(pool=pool, url=e.url, defaults={"weight": e.weight, "enabled": e.enabled})


def partner_dict(name: str, provider: str, availability: Decimal, services: list[str]) -> dict[str, Any]:
    """A partner in canonical form."""
    return drop_empty(
        {"name": name, "provider": provider, "promised_availability": num(availability), "services": sorted(services)},
        keep=("name", "promised_availability"),
    )


def partner_dict_from_db(p: PartnerService) -> dict[str, Any]:
    """A stored partner in canonical form (simulated services left out)."""
    return partner_dict(p.name, p.provider, p.promised_availability,
                        [s.name for s in p.services.all() if not s.simulated])


class PartnerKind(Kind, section="partners", singular="partner", spec=PartnerSpec, model=PartnerService,
                  depends=("services",)):
    """Partner (upstream) services with the availability they promise and the services that depend on them."""

    def check(self, check: Check) -> None:
        for p, partner in check.each("partners"):
            for j, name in enumerate(partner.services):
                check.refers(f"{p}.services[{j}]", "services", name)

    def canonical(self, item: PartnerSpec) -> dict[str, Any]:
        return partner_dict(item.name, item.provider, item.promised_availability, item.services)

    def stored(self, name: str) -> dict[str, Any] | None:
        partner = PartnerService.objects.filter(name=name).prefetch_related("services").first()
        return partner_dict_from_db(partner) if partner else None

    def write(self, items: list[PartnerSpec]) -> None:
        for p in items:
            partner, _ = PartnerService.objects.update_or_create(
                name=p.name, defaults={"provider": p.provider, "promised_availability": p.promised_availability}
            )
            partner.services.set(Service.objects.filter(name__in=p.services))

    def export(self) -> tuple[list[dict[str, Any]], list[str]]:
        partners = PartnerService.objects.order_by("name").prefetch_related("services")
        return [partner_dict_from_db(p) for p in partners], []
