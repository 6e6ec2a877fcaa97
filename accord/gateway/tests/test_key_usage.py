"""Usage per API key: the gateway counts each request under the key it was identified by, per UTC day, and writes
the counts with its rollups, each request once, even when a commit's answer is lost."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
from pathlib import Path

import pytest
from django.db import OperationalError

from accord.catalog.models import ApiCredential, CredentialUsage, Endpoint, Pool, Service
from accord.customers.models import Account, Tier
from accord.gateway.flusher import Flusher, write_key_uses
from accord.gateway.measure import Accumulator, KeyUses
from accord.gateway.models import Rollup
from accord.lib.testing import accord_command, run_in_thread, subprocess_env

from .conftest import EchoServer, wait_until
from .test_live import admin_status, hammer
from .test_proxy import dead_port

DAY = 86_400
T0 = 20_500 * DAY  # a midnight, UTC
DAY0 = dt.date(1970, 1, 1) + dt.timedelta(days=T0 // DAY)


def keys_of(*names: str) -> dict[str, tuple[ApiCredential, str]]:
    tier = Tier.objects.create(name="gold", rank=2)
    acme = Account.objects.create(name="Acme", external_id="ACME", tier=tier)
    other = Account.objects.create(name="Other", external_id="OTHER", tier=tier)
    return {name: ApiCredential.issue(other if name == "other" else acme, name) for name in names}


def usage() -> dict[tuple[str, dt.date], int]:
    return {(u.credential.name, u.day): u.requests for u in CredentialUsage.objects.select_related("credential")}


@pytest.mark.django_db
def test_counts_per_key_and_day_add_up_across_writes_and_last_used_only_moves_forward() -> None:
    keys = keys_of("web", "batch")
    web, batch = keys["web"][0], keys["batch"][0]
    acc = Accumulator()
    for i in range(5):
        acc.use_key(web.pk, T0 - 2 + i)  # two the day before, three on the day
    acc.use_key(batch.pk, T0 + 10.7)
    write_key_uses(acc.take_key_uses(), "first")
    assert acc.key_uses == {}
    day = DAY0
    assert usage() == {("web", day - dt.timedelta(days=1)): 2, ("web", day): 3, ("batch", day): 1}
    acc.use_key(web.pk, T0 + 5)
    acc.use_key(web.pk, T0 - 100)  # an older request (another worker's clock) does not move last_used back
    write_key_uses(acc.take_key_uses(), "second")
    assert usage()[("web", day)] == 4 and usage()[("web", day - dt.timedelta(days=1))] == 3
    web.refresh_from_db()
    batch.refresh_from_db()
    assert web.last_used_at == dt.datetime.fromtimestamp(T0 + 5, tz=dt.UTC)
    assert batch.last_used_at == dt.datetime.fromtimestamp(T0 + 10, tz=dt.UTC)
    write_key_uses({(web.pk, T0 // DAY): [7, T0 + 20]}, "second")  # the same name again: committed already, skipped
    assert usage()[("web", day)] == 4
    assert CredentialUsage.this_month(CredentialUsage.objects.all(), today=day) == {web.pk: 7, batch.pk: 1}  # both days
    next_month = (DAY0.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    assert CredentialUsage.this_month(CredentialUsage.objects.all(), today=next_month) == {}


@pytest.mark.django_db
def test_uses_of_a_key_deleted_meanwhile_are_left_out_and_the_rest_written() -> None:
    keys = keys_of("web", "gone")
    web, gone = keys["web"][0], keys["gone"][0]
    uses = {(web.pk, T0 // DAY): [3, T0], (gone.pk, T0 // DAY): [9, T0]}
    gone.delete()
    write_key_uses(uses, "with-a-deleted-key")
    assert usage() == {("web", DAY0): 3}


@pytest.mark.django_db(transaction=True)
def test_a_usage_write_whose_commit_answer_was_lost_is_retried_and_counted_once() -> None:
    web = keys_of("web")["web"][0]
    written: list[str] = []

    def lossy(uses: KeyUses, name: str) -> None:
        """The first write commits, then its answer is lost (the connection cut after the database committed)."""
        write_key_uses(uses, name)
        written.append(name)
        if len(written) == 1:
            raise OperationalError("server closed the connection unexpectedly (after the commit)")

    async def scenario() -> tuple[bool, bool, dict[tuple[int, int], list[int]]]:
        acc = Accumulator()
        flusher = Flusher(acc, key_writer=lossy)
        for i in range(6):
            acc.record(T0 + i, "ACME", "booking", "", "primary", "ok", 200, 1, 1, 2.0, "gold")
            acc.use_key(web.pk, T0 + i)
        first = await flusher.flush()
        for i in range(4):  # measured meanwhile
            acc.record(T0 + 30 + i, "ACME", "booking", "", "primary", "ok", 200, 1, 1, 2.0, "gold")
            acc.use_key(web.pk, T0 + 30 + i)
        second = await flusher.flush()
        await flusher.close()
        return first, second, acc.key_uses

    first, second, left = run_in_thread(scenario())
    assert (first, second) == (False, True) and left == {}
    assert len(written) == 3 and written[0] == written[1] != written[2]  # retried under its name, then the new
    assert usage() == {("web", DAY0): 10}  # not 16: the retried write was found committed
    assert sum(Rollup.objects.per_account_minutes().values_list("count", flat=True)) == 10


@pytest.mark.django_db(transaction=True)
def test_the_gateway_command_counts_each_keys_requests_and_not_refused_ones(upstreams: list[EchoServer]) -> None:
    keys = keys_of("web", "batch", "other", "revoked")
    keys["revoked"][0].revoke()
    svc = Service.objects.create(name="booking", base_path="/bookings")
    pool = Pool.objects.create(service=svc, name="primary", role="primary", capacity=10)
    Endpoint.objects.create(pool=pool, url=upstreams[0].url)
    port, admin = dead_port(), dead_port()
    log_path = f"{os.environ.get('TMPDIR', '/tmp')}/accord-gateway-keys-{os.getpid()}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*accord_command(), "gateway", "--listen", f"127.0.0.1:{port}", "--workers", "2",
                             "--admin", f"127.0.0.1:{admin}", "--flush", "1"],
                            env=subprocess_env(), stdout=log, stderr=log, start_new_session=True)
    try:
        wait_until(lambda: admin_status(admin, "/readyz") == 200 or proc.poll() is not None, timeout=60,
                   what="the gateway to be ready")
        bearer = {name: {"Authorization": f"Bearer {key}"} for name, (_c, key) in keys.items()}
        paths = ([("/bookings/1", bearer["web"])] * 3 + [("/bookings/2", bearer["batch"])]
                 + [("/bookings/3", bearer["other"]), ("/bookings/4", bearer["revoked"]),
                    ("/bookings/5", {"X-Api-Key": "acc_unknown"}), ("/elsewhere", bearer["web"])])
        results = hammer(port, clients=4, per_client=40, paths=paths)
        assert len(results) == 160
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        log.close()
    assert code == 0, Path(log_path).read_text(errors="replace")[-3000:]
    # what each client sent is fixed (client n's i-th request: paths[(n + i) % 8]); the answers come back in any order
    sent_paths = [paths[(n + i) % len(paths)] for n in range(4) for i in range(40)]
    expected = sorted(404 if path == "/elsewhere" else 401 if h in (bearer["revoked"], {"X-Api-Key": "acc_unknown"})
                      else 200 for path, h in sent_paths)
    assert sorted(r[0] for r in results) == expected
    sent = {name: sum(1 for path, h in sent_paths if h == bearer[name] and path != "/elsewhere")
            for name in ("web", "batch", "other")}
    counted: dict[str, int] = {}
    for (name, _day), n in usage().items():  # one day, or two if the run crossed midnight UTC
        counted[name] = counted.get(name, 0) + n
    # every request identified by a live key counts, whatever the upstream answered; a refused key, or a path no
    # service is routed at (answered before the key is looked at), does not
    assert counted == sent, (counted, sent)
    for name in ("web", "batch", "other"):
        keys[name][0].refresh_from_db()
        assert keys[name][0].last_used_at is not None
    keys["revoked"][0].refresh_from_db()
    assert keys["revoked"][0].last_used_at is None
