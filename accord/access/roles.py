"""The staff roles: each is a Django group holding the permissions its patterns match.

A pattern is `app_label.codename` with shell wildcards (`customers.view_*`, `desk.*`); `*.view_*` reaches every
app of Accord (and only Accord's: Django's own `auth`, `admin`, `sessions` and `contenttypes` are matched only by
a pattern naming them). `sync()` runs after every migrate, so the groups always hold exactly this table.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from django.contrib.auth.models import Group, Permission
from django.db import transaction

ACCORD_APPS = (
    "customers",
    "agreements",
    "catalog",
    "gateway",
    "governance",
    "desk",
    "reports",
    "billing",
    "insight",
    "ops",
    "access",
    "outreach",
)
_OWN_TOKENS = ("access.view_apitoken", "access.add_apitoken", "access.delete_apitoken")
_CATALOG_READ = tuple(
    f"catalog.view_{m}" for m in ("service", "operation", "pool", "endpoint", "partnerservice")
)

#: role -> (what it is for, the permission patterns it holds)
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "agent": (
        "works tickets; reads accounts, agreements, the catalog (not its API keys), governance and the desk's settings",
        (
            "customers.view_*",
            "agreements.view_*",
            *_CATALOG_READ,
            "desk.*",
            "governance.view_*",
            "gateway.view_*",
            "insight.view_*",
            "ops.view_*",
            "outreach.view_*",
            "outreach.change_consent",  # a contact who asks an agent to stop mailing them is opted out at once
            *_OWN_TOKENS,
        ),
    ),
    "manager": (
        "edits accounts, agreements, the catalog and policies; issues customers' API keys",
        (
            "customers.*",
            "agreements.*",
            "catalog.*",
            "desk.*",
            "governance.*",
            "gateway.*",
            "insight.*",
            "reports.view_*",
            "ops.view_*",
            "access.view_auditentry",
            "outreach.*",
            *_OWN_TOKENS,
        ),
    ),
    "finance": (
        "reads everything; approves, rejects and applies service credits; finalises, voids and marks invoices paid; "
        "manages orders and exchange rates",
        ("*.view_*", "reports.*", "billing.*", "insight.*", *_OWN_TOKENS),
    ),
    "administrator": (
        "every permission, staff users and groups included",
        ("*.*", "auth.*"),
    ),
}


#: role -> permissions its patterns would match but it must not hold. Agents work tickets and use canned replies;
#: the desk's configuration (mailboxes, webhook channels, escalation rules, support groups and their members) and
#: the canned replies themselves are a manager's: agents read them.
EXCEPT: dict[str, tuple[str, ...]] = {
    "agent": tuple(
        f"desk.{action}_{model}"
        for model in ("mailbox", "webhookchannel", "escalationrule", "supportgroup", "cannedreply")
        for action in ("add", "change", "delete")
    ),
}


def _matches(pattern: str, app_label: str, codename: str) -> bool:
    app, _, code = pattern.partition(".")
    if app == "*" and app_label not in ACCORD_APPS:
        return False
    return fnmatchcase(app_label, app) and fnmatchcase(codename, code)


def permissions_of(role: str, using: str = "default") -> list[Permission]:
    """The permissions a role's patterns match among those the database holds."""
    patterns = ROLES[role][1]
    excluded = set(EXCEPT.get(role, ()))
    return [
        p
        for p in Permission.objects.using(using).select_related("content_type")
        if any(_matches(pat, p.content_type.app_label, p.codename) for pat in patterns)
        and f"{p.content_type.app_label}.{p.codename}" not in excluded
    ]


def sync(using: str = "default") -> dict[str, int]:
    """Create each role's group and give it exactly its permissions; returns role -> number of permissions."""
    from django.apps import apps
    from django.contrib.auth.management import create_permissions

    # post_migrate reaches the apps one by one: make sure every app's permissions exist before matching them.
    for config in apps.get_app_configs():
        create_permissions(config, verbosity=0, using=using)
    counts = {}
    with transaction.atomic(using=using):
        for role in ROLES:
            group, _ = Group.objects.using(using).get_or_create(name=role)
            perms = permissions_of(role, using)
            group.permissions.set(perms)
            counts[role] = len(perms)
    return counts


def roles_of(user: object) -> list[str]:
    return sorted(g.name for g in user.groups.filter(name__in=ROLES))  # type: ignore[attr-defined]


def grant(user: object, role: str) -> None:
    if role not in ROLES:
        raise KeyError(role)
    group, _ = Group.objects.get_or_create(name=role)
    if not group.permissions.exists():
        sync()
    user.groups.add(group)  # type: ignore[attr-defined]


def revoke(user: object, role: str) -> None:
    if role not in ROLES:
        raise KeyError(role)
    user.groups.remove(*Group.objects.filter(name=role))  # type: ignore[attr-defined]
