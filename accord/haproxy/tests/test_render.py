"""The rendered configuration: HAProxy accepts it, no key is in any file in clear, routes and pools are right."""

from __future__ import annotations

import io
import re
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accord.catalog.models import ApiCredential, Endpoint, Operation, Pool, Service, hash_key
from accord.customers.models import Account, Tier
from accord.gateway.models import GatewayAction
from accord.gateway.snapshot import ActionRule, load_snapshot
from accord.haproxy.render import Options, bucket_value, render, shares, too_many_rate_limits, write
from accord.haproxy.run import _weight_commands, check_config, server_settings
from accord.haproxy.runtime import diff_map
from accord.lib.ports import free_port
from accord.lib.testing import subprocess_env


def catalog() -> dict[str, str]:
    """Two accounts (gold and silver) with a key each, a weighted primary pool and a standby pool."""
    gold, silver = Tier.objects.create(name="gold", rank=1), Tier.objects.create(name="silver", rank=2)
    acme = Account.objects.create(name="Acme", external_id="ACME", tier=gold)
    beta = Account.objects.create(name="Beta", external_id="BETA", tier=silver)
    svc = Service.objects.create(name="booking", base_path="/bookings")
    primary = Pool.objects.create(service=svc, name="main", role="primary", capacity=10)
    standby = Pool.objects.create(service=svc, name="spare", role="standby", capacity=10)
    Endpoint.objects.create(pool=primary, url="http://127.0.0.1:9101", weight=3)
    Endpoint.objects.create(pool=primary, url="http://127.0.0.1:9102")
    Endpoint.objects.create(pool=standby, url="http://127.0.0.1:9103")
    nested = Service.objects.create(name="booking-admin", base_path="/bookings/admin", allow_anonymous=True)
    Endpoint.objects.create(pool=Pool.objects.create(service=nested, name="main", capacity=5), url="http://127.0.0.1:9104")
    return {"acme": ApiCredential.issue(acme)[1], "beta": ApiCredential.issue(beta)[1]}


@pytest.mark.django_db
def test_the_rendered_configuration_passes_haproxy_check_and_holds_no_key_in_clear(
        haproxy_bin: str, tmp_path: Path) -> None:
    keys = catalog()
    GatewayAction.objects.create(name="slow-gold", kind="rate_limit", tiers=["gold"], params={"rps": 2})
    call_command("haproxy", "render", "--dir", str(tmp_path), "--listen", "127.0.0.1:18080",
                 "--collector", "127.0.0.1:15140")
    ok, said = check_config(tmp_path / "haproxy.cfg", haproxy_bin)
    assert ok, said
    assert "Configuration file is valid" in said
    files = [p for p in tmp_path.iterdir() if p.is_file()]
    assert len(files) == 17  # the configuration and sixteen maps
    for key in keys.values():
        assert all(key not in p.read_text() for p in files)
        assert all(key[4:] not in p.read_text() for p in files)  # not even without its prefix
    assert (tmp_path / "keys.map").read_text().splitlines() == sorted(
        [f"{hash_key(keys['acme'])} ACME", f"{hash_key(keys['beta'])} BETA"])
    assert f"{hash_key(keys['acme'])} gold" in (tmp_path / "tiers.map").read_text()
    # --output: the configuration where it is asked for, its maps beside it, and the file names them there
    call_command("haproxy", "render", "--output", str(tmp_path / "etc" / "accord.cfg"))
    assert (tmp_path / "etc" / "keys.map").exists()
    assert f"map({tmp_path / 'etc' / 'keys.map'})" in (tmp_path / "etc" / "accord.cfg").read_text()


@pytest.mark.django_db
def test_backends_carry_weights_checks_and_the_standby_pool_as_backup(tmp_path: Path) -> None:
    catalog()
    config = render(load_snapshot(), Options(tmp_path)).config
    main = config.split("backend booking.main\n")[1].split("\n\n")[0]
    # maxconn 0 (no limit): no admission action applies, so nothing holds calls back, as in the gateway
    assert re.search(r"server main\.1 127\.0\.0\.1:9101 weight 3 maxconn 0 check", main)
    assert re.search(r"server main\.2 127\.0\.0\.1:9102 weight 1 maxconn 0 check", main)
    assert re.search(r"server spare\.1 127\.0\.0\.1:9103 weight 1 maxconn 0 check .* backup$", main, re.MULTILINE)
    assert "    timeout queue 1000ms\n" in main
    assert "backend booking.spare\n" in config  # the standby pool alone, for route actions
    assert f"stats socket {tmp_path / 'admin.sock'} mode 600 level admin" in config


@pytest.mark.django_db
def test_a_disabled_endpoint_is_a_server_in_maintenance_and_enabling_it_is_a_runtime_api_command(
        tmp_path: Path, haproxy_bin: str) -> None:
    catalog()
    GatewayAction.objects.create(name="queue-all", kind="admission", params={})
    before = render(load_snapshot(), Options(tmp_path)).config
    Endpoint.objects.filter(url="http://127.0.0.1:9101").update(enabled=False)
    after = render(load_snapshot(), Options(tmp_path))
    main = after.config.split("backend booking.main\n")[1].split("\n\n")[0]
    # the same servers, numbered as before; the disabled one in maintenance, the pool's capacity all the other's
    assert re.search(r"server main\.1 127\.0\.0\.1:9101 weight 3 maxconn 1 check .* rise 1 disabled$", main, re.M)
    assert re.search(r"server main\.2 127\.0\.0\.1:9102 weight 1 maxconn 10 check .* rise 1$", main, re.M)
    assert _weight_commands(before, after.config) == [
        "set maxconn server booking.main/main.1 1", "set server booking.main/main.1 state maint",
        "set maxconn server booking.main/main.2 10"]
    assert _weight_commands(after.config, before) == [  # enabled again: its share first, then ready
        "set maxconn server booking.main/main.1 8", "set server booking.main/main.1 state ready",
        "set maxconn server booking.main/main.2 2"]
    write(after, Options(tmp_path))
    ok, said = check_config(tmp_path / "haproxy.cfg", haproxy_bin)
    assert ok, said
    assert "9101" not in " ".join(u.address for r in load_snapshot().routes for p in r.pools.values()
                                  for u in p.endpoints)  # the gateway still never sees it


@pytest.mark.django_db
def test_routes_are_tried_longest_base_path_first_on_segment_boundaries(tmp_path: Path) -> None:
    catalog()
    rendered = render(load_snapshot(), Options(tmp_path))
    routes = list(rendered.maps["routes.map"].items())
    assert routes == [(r"^/bookings/admin(/|$)", "booking-admin"), (r"^/bookings(/|$)", "booking")]
    pattern = re.compile(routes[1][0])
    assert pattern.match("/bookings") and pattern.match("/bookings/1") and not pattern.match("/bookingsx")
    assert rendered.maps["anonymous.map"] == {"booking-admin": "1"}
    assert rendered.maps["backends.map"] == {"booking": "booking.main", "booking-admin": "booking-admin.main"}


@pytest.mark.django_db
def test_a_route_action_for_a_tier_maps_its_accounts_to_the_standby_backend(tmp_path: Path) -> None:
    catalog()
    assert render(load_snapshot(), Options(tmp_path)).maps["pools.map"] == {}
    GatewayAction.objects.create(name="gold-to-spare", kind="route", tiers=["gold"], params={"pool": "spare"})
    assert render(load_snapshot(), Options(tmp_path)).maps["pools.map"] == {"booking|ACME": "booking.spare"}
    GatewayAction.objects.filter(name="gold-to-spare").update(active=False)
    assert render(load_snapshot(), Options(tmp_path)).maps["pools.map"] == {}


@pytest.mark.django_db
def test_shed_and_rate_limit_actions_become_map_entries_of_the_accounts_they_apply_to(tmp_path: Path) -> None:
    catalog()
    GatewayAction.objects.create(name="shed-silver", kind="shed", tiers=["silver"], params={"retry_after": 7})
    GatewayAction.objects.create(name="slow-gold", kind="rate_limit", tiers=["gold"], params={"rps": 2.5, "burst": 5})
    GatewayAction.objects.create(name="slower-gold", kind="rate_limit", accounts=["ACME"], services=["booking"],
                                 params={"rps": 4})
    maps = render(load_snapshot(), Options(tmp_path)).maps
    assert maps["shed.map"] == {"booking|BETA": "7", "booking-admin|BETA": "7"}
    # one token bucket per action, in the gateway's order: interval 1/rps, tolerance burst/rps (ticks of 10 µs)
    slow, slower = (ActionRule.from_action(a) for a in GatewayAction.objects.filter(kind="rate_limit").order_by("pk"))
    first, second = bucket_value(slow), bucket_value(slower)
    assert first.split(":")[1:] == ["40000", "200000"] and second.split(":")[1:] == ["25000", "100000"]
    assert maps["rates.map"] == {"booking|ACME": first, "booking-admin|ACME": first}
    assert maps["rates-2.map"] == {"booking|ACME": second}  # slower-gold is on booking only
    assert maps["rates-3.map"] == {}
    # a bucket whose burst changes is a new bucket (full, as the gateway starts one); its name alone does not change
    assert bucket_value(replace(slow, burst=6)).split(":")[0] != first.split(":")[0]
    assert bucket_value(replace(slow, burst=5.0)) == first
    assert too_many_rate_limits(load_snapshot()) == []
    # HAProxy 2.6 has three stick counters: a fourth action on one caller is left out, and said so
    for n in (3, 4):
        GatewayAction.objects.create(name=f"limit-{n}", kind="rate_limit", accounts=["ACME"], params={"rps": n})
    maps = render(load_snapshot(), Options(tmp_path)).maps
    # the gateway's order (priority, then name): limit-3, limit-4, slow-gold; slower-gold, the fourth, left out
    assert [maps[name]["booking|ACME"].split(":")[1] for name in ("rates.map", "rates-2.map", "rates-3.map")] == [
        "33333", "25000", "40000"]
    assert too_many_rate_limits(load_snapshot()) == ["booking|ACME"]
    err = io.StringIO()
    call_command("haproxy", "render", "--dir", str(tmp_path), stderr=err)
    assert "more than three rate-limit actions apply to booking|ACME" in err.getvalue()


def test_map_changes_delete_first_then_add_and_set() -> None:
    path = Path("/x/keys.map")
    old = {"h1": "ACME", "h2": "BETA", "h3": "GAMMA"}
    new = {"h1": "ACME", "h3": "DELTA", "h4": "BETA"}
    assert diff_map(path, old, new) == ["del map /x/keys.map h2", "set map /x/keys.map h3 DELTA",
                                        "add map /x/keys.map h4 BETA"]
    assert diff_map(path, new, new) == []


@pytest.mark.django_db
def test_an_admission_action_holds_the_servers_to_the_pools_capacity_and_queues_its_callers_by_rank(
        tmp_path: Path) -> None:
    keys = catalog()
    before = render(load_snapshot(), Options(tmp_path))
    assert before.maps["admission.map"] == {}
    GatewayAction.objects.create(name="queue-silver", kind="admission", tiers=["silver"], services=["booking"],
                                 params={"retry_after": 4})
    after = render(load_snapshot(), Options(tmp_path))
    assert after.maps["admission.map"] == {"booking|BETA": "4"}  # silver on booking only: ACME keeps class 0
    assert after.maps["ranks.map"][hash_key(keys["beta"])] == "2"  # its priority class
    main = after.config.split("backend booking.main\n")[1].split("\n\n")[0]
    # capacity 10 over weights 3 and 1: 8 and 2 (largest remainders); the standby backup its own pool's 10
    assert re.search(r"server main\.1 \S+ weight 3 maxconn 8 ", main)
    assert re.search(r"server main\.2 \S+ weight 1 maxconn 2 ", main)
    assert re.search(r"server spare\.1 \S+ weight 1 maxconn 10 .* backup$", main, re.MULTILINE)
    assert "    timeout queue 1000ms\n" in main  # the action's default max_wait
    assert "maxconn 0 " in after.config.split("backend booking-admin.main\n")[1]  # not under the action
    # switching it on is server maxconn and a map entry, both through the Runtime API: no other difference
    assert _weight_commands(before.config, after.config) == [
        "set maxconn server booking.main/main.1 8", "set maxconn server booking.main/main.2 2",
        "set maxconn server booking.main/spare.1 10", "set maxconn server booking.spare/spare.1 10"]
    assert re.sub(r"maxconn \d+ ", "", before.config) == re.sub(r"maxconn \d+ ", "", after.config)
    # a max_wait other than the default is the backend's `timeout queue` (a reload)
    GatewayAction.objects.filter(name="queue-silver").update(params={"max_wait_ms": 250})
    assert "    timeout queue 250ms\n" in render(load_snapshot(), Options(tmp_path)).config


def test_a_pools_capacity_is_split_over_its_servers_by_weight_at_least_one_each() -> None:
    assert shares(10, [3, 1]) == [8, 2]
    assert shares(10, [1, 1, 1]) == [4, 3, 3]
    assert shares(1, [1, 1]) == [1, 1]  # fewer slots than servers: one each (HAProxy's 0 would mean no limit)
    assert shares(0, [2, 5]) == [0, 0]
    assert sum(shares(100, [7, 3, 5, 1])) == 100


@pytest.mark.django_db
def test_an_action_scoped_to_an_operation_has_keys_of_its_own_for_that_operation(tmp_path: Path) -> None:
    catalog()
    svc = Service.objects.get(name="booking")
    Operation.objects.create(service=svc, name="view", method="GET", path_pattern="/bookings/{id}")
    Operation.objects.create(service=svc, name="cancel-all", method="*", path_pattern="/bookings/all-of-them")
    rendered = render(load_snapshot(), Options(tmp_path))
    ops = list(rendered.maps["operations.map"].items())
    assert ops == [(r"^booking\|[A-Z]+\|/bookings/all\-of\-them/?$", "cancel-all"),  # most specific first
                   (r"^booking\|GET\|/bookings/[^/]+/?$", "view")]
    assert re.match(ops[1][0], "booking|GET|/bookings/7") and not re.match(ops[1][0], "booking|POST|/bookings/7")
    assert rendered.maps["opscoped.map"] == {}  # no action names an operation: nothing to name per request
    GatewayAction.objects.create(name="shed-view", kind="shed", operations=["view"], tiers=["gold"],
                                 params={"retry_after": 5})
    GatewayAction.objects.create(name="slow-gold", kind="rate_limit", tiers=["gold"], params={"rps": 3})
    maps = render(load_snapshot(), Options(tmp_path)).maps
    assert maps["opscoped.map"] == {"booking": "1", "booking|view": "1"}
    assert maps["shed.map"] == {"booking|view|ACME": "5"}  # gold's view only
    # the view's keys hold its whole policy: the service-wide rate limit too
    bucket = maps["rates.map"]["booking|ACME"]
    assert maps["rates.map"] == {"booking|ACME": bucket, "booking|view|ACME": bucket, "booking-admin|ACME": bucket}


@pytest.mark.django_db
def test_host_is_the_upstreams_when_every_server_of_a_backend_has_the_same_one(tmp_path: Path) -> None:
    svc = Service.objects.create(name="trips", base_path="/trips")
    main = Pool.objects.create(service=svc, name="main", capacity=5)
    Endpoint.objects.create(pool=main, url="http://trips.internal:8080/")
    Endpoint.objects.create(pool=main, url="http://trips.internal:8080")
    spare = Pool.objects.create(service=svc, name="spare", role="standby", capacity=5)
    Endpoint.objects.create(pool=spare, url="http://trips-dr.internal")
    config = render(load_snapshot(), Options(tmp_path)).config
    primary = config.split("backend trips.main\n")[1].split("\n\n")[0]
    standby = config.split("backend trips.spare\n")[1].split("\n\n")[0]
    # the primary backend also carries the standby's server as a backup: two Hosts, so the client's stays
    assert "set-header Host" not in primary
    assert "    http-request set-header Host trips-dr.internal\n" in standby + "\n"  # port 80: not said
    Endpoint.objects.filter(pool=spare).delete()
    primary = render(load_snapshot(), Options(tmp_path)).config.split("backend trips.main\n")[1].split("\n\n")[0]
    assert "    http-request set-header Host trips.internal:8080\n" in primary


@pytest.mark.django_db
def test_the_log_line_goes_through_a_ring_over_tcp_by_default_or_over_udp_and_both_pass_haproxy_check(
        haproxy_bin: str, tmp_path: Path) -> None:
    catalog()
    ring_options = Options(tmp_path / "ring", collector="127.0.0.1:15140", ring_size=65536)
    udp_options = Options(tmp_path / "udp", collector="127.0.0.1:15140", log_transport="udp")
    ring = render(load_snapshot(), ring_options).config
    section = ring.split("ring accord_log\n")[1].split("\n\n")[0]
    assert "    size 65536\n" in section and "    format rfc3164\n" in section and "    maxlen 8192\n" in section
    assert section.endswith("    server collector 127.0.0.1:15140 log-proto octet-count")
    assert "    log ring@accord_log len 8192 local0 info\n" in ring
    udp = render(load_snapshot(), udp_options).config
    assert "ring accord_log" not in udp and "    log 127.0.0.1:15140 len 8192 format rfc3164 local0 info\n" in udp
    for options in (ring_options, udp_options):
        write(render(load_snapshot(), options), options)
        ok, said = check_config(options.config_path, haproxy_bin)
        assert ok, said
    # the default size, and the server settings the runner compares stay the backends' own
    assert "    size 33554432\n" in render(load_snapshot(), Options(tmp_path)).config
    assert not any(name.endswith("/collector") for name in server_settings(ring))


@pytest.mark.django_db
def test_a_bad_log_transport_or_ring_size_is_refused_with_exit_2_and_nothing_written(tmp_path: Path) -> None:
    for size, message in (("1k", "is 1024 bytes: give 16384"), ("2G", "give 16384 (16k) to 1073741824"),
                          ("lots", "is not a size in bytes"), ("5.5M", "is not a size in bytes"), ("5 M", "not a size")):
        with pytest.raises(CommandError, match=re.escape(message)) as refused:
            call_command("haproxy", "render", "--dir", str(tmp_path), "--ring-size", size)
        assert refused.value.returncode == 2
    assert not (tmp_path / "haproxy.cfg").exists()
    call_command("haproxy", "render", "--dir", str(tmp_path), "--ring-size", "64k", stdout=io.StringIO())
    assert "    size 65536\n" in (tmp_path / "haproxy.cfg").read_text()
    (tmp_path / "haproxy.cfg").unlink()
    for args, message in ((["render", "--log-transport", "tcp"], "invalid choice: 'tcp' (choose from 'ring', 'udp')"),
                          (["run", "--wait-collector", "-1"], "--wait-collector must be 0")):
        done = subprocess.run([sys.executable, "-m", "accord", "haproxy", *args, "--dir", str(tmp_path)],
                              env=subprocess_env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr, done
    assert not (tmp_path / "haproxy.cfg").exists()


def test_run_waits_for_a_collector_that_listens_and_gives_up_on_one_that_does_not() -> None:
    from accord.haproxy.management.commands.haproxy import _collector_listens

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", free_port()))
        listening.listen()
        assert _collector_listens(f"127.0.0.1:{listening.getsockname()[1]}", 0.5)
    started = time.monotonic()
    assert not _collector_listens(f"127.0.0.1:{free_port()}", 0.5)  # nothing listens there
    assert 0.5 <= time.monotonic() - started < 3
