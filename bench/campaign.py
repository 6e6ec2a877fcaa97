#!/usr/bin/env python3
"""Benchmark a campaign: 100,000 recipients rendered, DKIM-signed and handed to an SMTP server on loopback.

    python bench/campaign.py [--recipients 100000] [--senders 1,2] [--postgres postgres://127.0.0.1:5432/postgres]

A fresh database (SQLite in a temporary directory, or a new PostgreSQL database) gets 100,000 contacts with
confirmed consent to one purpose and a segment of all of them; a 2048-bit RSA DKIM key is generated. The SMTP
server is a small asyncio sink in its own process (it answers EHLO, MAIL, RCPT, DATA and QUIT, and counts).

Measured, in the same run:

1. **Accord**: for each count in `--senders` (default 1, then 2), a campaign to all 100,000: `campaigns.prepare`
   (the send rows) and then the sender, rate unlimited: `campaigns.send` (what `accord outreach send-campaign`
   runs) in this process for 1, and for more the command itself, `accord outreach send-campaign ID --processes N`,
   which starts N senders on the campaign: claim in batches,
   read recipients, render text and HTML parts, sign (dkimpy, RSA step through OpenSSL), hand over with SMTP
   (pipelined: the sink offers PIPELINING, as Postfix does), mark each row sent. Messages per second over the
   sending.
2. **Floor**: plain smtplib sending the same number of pre-rendered, unsigned messages over one connection (what
   the SMTP exchange alone costs on this machine, client and sink included).
3. **email + dkimpy, no Accord**: the standard library's email package building a like message and
   `dkim.sign` (dkimpy's pure-Python RSA) signing it, on 1,000 messages, no SMTP; and the same with the OpenSSL
   step Accord uses (`accord.outreach.dkimsign.Signer`), on 10,000.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import smtplib
import socket
import sys
import tempfile
import time
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HTML = ("<html><body><h1>December news for {{ account.name }}</h1><p>Hello {{ contact.name }},</p>"
        "<p>Here is what changed this month: faster support, a new status page, and the year's report.</p>"
        "<p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p></body></html>")
TEXT = ("Hello {{ contact.first_name }},\n\nHere is what changed this month at {{ account.name }}: faster support,\n"
        "a new status page, and the year's report.\n\nUnsubscribe: {{ unsubscribe_url }}\n")


# -- the sink ---------------------------------------------------------------------------------------------------

async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: Any) -> None:
    writer.write(b"220 sink ESMTP\r\n")
    while True:
        line = await reader.readline()
        if not line:
            break
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            writer.write(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n")
        elif verb == b"DATA":
            writer.write(b"354 go ahead\r\n")
            await writer.drain()
            await reader.readuntil(b"\r\n.\r\n")
            with counter.get_lock():
                counter.value += 1
            writer.write(b"250 OK queued\r\n")
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            break
        else:
            writer.write(b"250 OK\r\n")
        await writer.drain()
    writer.close()


def sink(port: int, counter: Any, ready: Any) -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: _session(r, w, counter), "127.0.0.1", port, limit=1 << 22)
        ready.set()
        async with server:
            await server.serve_forever()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- set-up -----------------------------------------------------------------------------------------------------

def make_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))


def setup_django(database_url: str, var_dir: str, port: int, key: Path) -> None:
    os.environ.update(DATABASE_URL=database_url, ACCORD_VAR_DIR=var_dir, DJANGO_SETTINGS_MODULE="accord.settings",
                      ACCORD_DKIM_KEY_FILE=str(key), ACCORD_DKIM_SELECTOR="bench", ACCORD_DKIM_DOMAIN="accord.example",
                      ACCORD_EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                      ACCORD_SMTP_HOST="127.0.0.1", ACCORD_SMTP_PORT=str(port), ACCORD_MAIL_FROM="news@accord.example",
                      ACCORD_PUBLIC_URL="https://crm.accord.example", ACCORD_UNSUBSCRIBE_MAILTO="unsubscribe@accord.example")
    import django
    from django.conf import settings

    django.setup()
    assert str(key) == settings.ACCORD_DKIM_KEY_FILE
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def populate(n: int) -> int:
    from accord.customers.models import Account, Contact
    from accord.outreach.models import Consent, Purpose, Segment

    accounts = Account.objects.bulk_create([Account(name=f"Customer {i:04d}", external_id=f"A{i}") for i in range(1000)])
    purpose = Purpose.objects.create(name="newsletter", title="the monthly newsletter")
    for start in range(0, n, 5000):
        contacts = Contact.objects.bulk_create([Contact(account=accounts[i % 1000], name=f"Reader Number{i}",
                                                        external_id=f"C{i}") for i in range(start, min(n, start + 5000))])
        Consent.objects.bulk_create([Consent(contact=c, purpose=purpose, status="confirmed", source="import",
                                             address=f"reader{c.external_id}@example.com", proof="bench")
                                     for c in contacts])
    segment = Segment.objects.create(name="everyone", spec={})
    return new_campaign(purpose, segment)


def new_campaign(purpose: Any, segment: Any) -> int:
    from accord.outreach.models import Campaign

    campaign = Campaign.objects.create(name="December news", purpose=purpose, segment=segment,
                                       subject="December news for {{ account.name }}", html=HTML, text=TEXT,
                                       rate=1e9, status="scheduled")
    return campaign.pk


def send_command(campaign_id: int, processes: int) -> int:
    """`accord outreach send-campaign ID --processes N`, the command a user runs, in its own process on this
    process's settings (the environment setup_django filled); the number it says it sent."""
    import re
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "accord", "outreach", "send-campaign", str(campaign_id), "--batch",
                           "500", "--processes", str(processes)], env=env, cwd=ROOT, capture_output=True, text=True)
    print(f"  {done.stdout.strip()}", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"send-campaign failed: {done.stderr[-2000:]}")
    said = re.search(r"\): sent ([\d,]+),", done.stdout)
    assert said, done.stdout
    return int(said.group(1).replace(",", ""))


# -- references -------------------------------------------------------------------------------------------------

def plain_message(i: int) -> bytes:
    msg = MIMEMultipart("alternative")
    msg["From"], msg["To"], msg["Subject"] = "news@accord.example", f"reader{i}@example.com", "December news"
    msg["Date"], msg["Message-ID"] = format_datetime(__import__("datetime").datetime.now().astimezone()), f"<{i}@bench>"
    msg["List-Unsubscribe"] = "<https://crm.accord.example/u/token/>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.attach(MIMEText(TEXT.replace("{{", "").replace("}}", ""), "plain", "utf-8"))
    msg.attach(MIMEText(HTML.replace("{{", "").replace("}}", ""), "html", "utf-8"))
    return msg.as_bytes().replace(b"\n", b"\r\n")


def floor(port: int, n: int, counter: Any) -> float:
    messages = [plain_message(i) for i in range(min(n, 2000))]
    before = counter.value
    smtp = smtplib.SMTP("127.0.0.1", port)
    t0 = time.perf_counter()
    for i in range(n):
        smtp.sendmail("news@accord.example", [f"reader{i}@example.com"], messages[i % len(messages)])
    elapsed = time.perf_counter() - t0
    smtp.quit()
    assert counter.value - before == n
    return n / elapsed


def email_and_dkimpy(key: Path, n: int, openssl: bool) -> float:
    import dkim

    from accord.outreach.dkimsign import SIGNED_HEADERS, Signer

    pem = key.read_bytes()
    signer = Signer(pem, "bench", "accord.example")
    t0 = time.perf_counter()
    for i in range(n):
        raw = plain_message(i)
        if openssl:
            signer.sign(raw)
        else:
            dkim.sign(raw, b"bench", b"accord.example", pem, include_headers=list(SIGNED_HEADERS))
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--senders", default="1,2", help="sender processes, one campaign per count (1,2)")
    parser.add_argument("--postgres", help="a PostgreSQL server URL; a database accord_bench_campaign is made there")
    args = parser.parse_args()

    port = free_port()
    counter = multiprocessing.Value("q", 0)
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=sink, args=(port, counter, ready), daemon=True)
    server.start()
    ready.wait(10)
    tmp = Path(tempfile.mkdtemp(prefix="bench-campaign-"))
    key = tmp / "dkim.pem"
    make_key(key)
    if args.postgres:
        import psycopg

        base = args.postgres.rstrip("/")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS accord_bench_campaign")
            conn.execute("CREATE DATABASE accord_bench_campaign")
        database_url = base.rsplit("/", 1)[0] + "/accord_bench_campaign"
    else:
        database_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    setup_django(database_url, str(tmp), port, key)
    from accord.outreach import campaigns
    from accord.outreach.models import Campaign

    print(f"database: {'PostgreSQL' if args.postgres else 'SQLite'}; {args.recipients:,} recipients; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    t0 = time.perf_counter()
    campaign_id = populate(args.recipients)
    print(f"set-up: {args.recipients:,} contacts with consent in {time.perf_counter() - t0:.1f} s", flush=True)
    for n_senders in [int(v) for v in args.senders.split(",")]:
        if n_senders != int(args.senders.split(",")[0]):
            first = Campaign.objects.get(pk=campaign_id)
            campaign_id = new_campaign(first.purpose, first.segment)
        campaign = Campaign.objects.select_related("purpose", "segment").get(pk=campaign_id)
        t0 = time.perf_counter()
        prepared = campaigns.prepare(campaign)
        print(f"prepare (send rows): {prepared.queued:,} queued in {time.perf_counter() - t0:.1f} s", flush=True)
        before = counter.value
        t0 = time.perf_counter()
        if n_senders == 1:
            sent = campaigns.send(campaign, batch=500).sent
        else:  # what a user runs: one command, N sender processes (the time includes their start-up)
            from django.db import connections

            connections.close_all()
            sent = send_command(campaign_id, n_senders)
        elapsed = time.perf_counter() - t0
        assert counter.value - before == sent == args.recipients, (counter.value - before, sent)
        print(f"Accord: {sent:,} messages rendered, DKIM-signed and handed over in {elapsed:.1f} s with "
              f"{n_senders} sender process(es): {sent / elapsed:,.0f} messages/s "
              f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    floor_rate = floor(port, min(args.recipients, 20_000), counter)
    print(f"floor, smtplib with pre-rendered unsigned messages: {floor_rate:,.0f} messages/s", flush=True)
    pure = email_and_dkimpy(key, 1000, openssl=False)
    fast = email_and_dkimpy(key, 10_000, openssl=True)
    print(f"email + dkim.sign (pure-Python RSA), no SMTP, no Accord: {pure:,.0f} messages/s", flush=True)
    print(f"email + dkimpy with the OpenSSL RSA step, no SMTP, no Accord: {fast:,.0f} messages/s", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end", flush=True)
    server.terminate()


if __name__ == "__main__":
    main()
