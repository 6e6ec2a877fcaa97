"""Desk personas: a platinum account under an agreement with support objectives on a London calendar."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from accord.access.roles import grant
from accord.agreements.models import Agreement, BusinessCalendar, Objective
from accord.customers.models import Account, Contact, ContactPoint, Tier
from accord.lib.ports import free_port

LONDON = dt.timezone(dt.timedelta(0))  # winter in London: UTC+0


def at(text: str) -> dt.datetime:
    """An aware instant from 'YYYY-MM-DD HH:MM' in UTC."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@dataclass
class Desk:
    """The cast of the desk tests."""

    calendar: BusinessCalendar
    platinum: Tier
    gold: Tier
    agreement: Agreement
    gold_agreement: Agreement
    account: Account
    contact: Contact
    agent: User


def support_objectives(agreement: Agreement, first: dict[str, int], nxt: dict[str, int], res: dict[str, int]) -> None:
    for kind, targets in (("first_response", first), ("next_response", nxt), ("resolution", res)):
        for priority, minutes in targets.items():
            Objective.objects.create(
                agreement=agreement, name=f"{kind}-{priority}", kind=kind, target=Decimal(minutes), priority=priority
            )


@pytest.fixture
def desk(db: None) -> Desk:
    calendar = BusinessCalendar.objects.create(
        name="london-office",
        timezone="Europe/London",
        hours={d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    )
    platinum = Tier.objects.create(name="platinum", rank=1)
    gold = Tier.objects.create(name="gold", rank=2)
    agreement = Agreement.objects.create(
        name="platinum-sla", tier=platinum, effective_from=dt.date(2026, 1, 1), calendar=calendar
    )
    support_objectives(
        agreement,
        first={"urgent": 30, "normal": 60, "low": 240},
        nxt={"urgent": 60, "normal": 120, "low": 480},
        res={"urgent": 240, "normal": 960, "low": 2400},
    )
    gold_agreement = Agreement.objects.create(
        name="gold-sla", tier=gold, effective_from=dt.date(2026, 1, 1), calendar=calendar
    )
    support_objectives(gold_agreement, first={"normal": 240}, nxt={"normal": 480}, res={"normal": 2400})
    account = Account.objects.create(name="Globetrotter Ltd", external_id="GLOBE", tier=platinum)
    contact = Contact.objects.create(name="Grace Hopper", account=account)
    ContactPoint.objects.create(contact=contact, kind="email", value="grace@globetrotter.example", primary=True)
    ContactPoint.objects.create(contact=contact, kind="phone", value="+442079460000")
    agent = User.objects.create_user("agent", "agent@accord.example", "agent-password", is_staff=True)
    grant(agent, "agent")
    return Desk(calendar, platinum, gold, agreement, gold_agreement, account, contact, agent)


@dataclass
class Imap:
    """A running Dovecot IMAP server on loopback with one mailbox user."""

    host: str
    port: int
    user: str
    password: str


DOVECOT_CONF = """
protocols = imap
listen = 127.0.0.1
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
info_log_path = {tmp}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{tmp}/mail/%u
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {tmp}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={tmp}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


@pytest.fixture
def dovecot() -> Iterator[Imap]:
    """Start Dovecot from Debian's dovecot-imapd; skipped without it unless CI requires it."""
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not Path(binary).exists():
        if os.environ.get("ACCORD_REQUIRE_DOVECOT") == "1":
            pytest.fail("dovecot is missing and ACCORD_REQUIRE_DOVECOT=1 (apt-get install dovecot-imapd)")
        pytest.skip("dovecot is not installed")
    # Dovecot's own users (dovecot, dovenull, nobody) must reach the files: not under pytest's 0700 tmp.
    tmp = Path(tempfile.mkdtemp(prefix="accord-dovecot-"))
    tmp.chmod(0o755)
    for sub in ("run", "state", "mail", "home"):
        (tmp / sub).mkdir()
    nobody = pwd.getpwnam("nobody")
    (tmp / "mail").chmod(0o777)
    (tmp / "home").chmod(0o777)
    (tmp / "passwd").write_text("desk@voyager.example:{PLAIN}mailbox-secret\n")
    port = free_port()
    conf = tmp / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(tmp=tmp, port=port, uid=nobody.pw_uid, gid=nobody.pw_gid))
    proc = subprocess.Popen([binary, "-F", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log = (tmp / "dovecot.log").read_text() if (tmp / "dovecot.log").exists() else ""
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"dovecot did not start: {out}\n{log}")
            time.sleep(0.1)
    try:
        yield Imap("127.0.0.1", port, "desk@voyager.example", "mailbox-secret")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
