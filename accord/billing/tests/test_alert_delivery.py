"""Forecast alerts sent: once per account, meter and kind until they clear, by e-mail through a real SMTP server
on loopback and by signed webhook to a loopback HTTP receiver; a failed delivery is shown and retried next run."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from accord.billing.models import ForecastAlert
from accord.customers.models import Account
from accord.governance.notify import sign
from accord.governance.tests.test_notify import Receiver, receiver  # noqa: F401 - the loopback HTTP receiver
from accord.lib.smtp import SmtpSink

from .conftest import account
from .test_forecasting import LAST, NOW, daily, store

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


@pytest.fixture
def sink(settings: Any) -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT = SMTP_BACKEND, s.host, s.port
        yield s


@pytest.fixture
def acme(catalog: object, settings: Any, receiver: Receiver) -> Account:  # noqa: F811
    """ACME, managed by Mia, with 84 days of requests; alerts also go to billing@ and to the receiver."""
    settings.ACCORD_BILLING_ALERT_EMAILS = ["billing@provider.example"]
    settings.ACCORD_BILLING_ALERT_WEBHOOKS = [{"url": f"http://127.0.0.1:{receiver.server_port}/hook", "secret": "s3"}]
    acme = account("ACME")
    acme.owner = User.objects.create_user("mia", email="mia@provider.example")
    acme.save()
    return acme


def forecast(when: dt.datetime) -> str:
    out = io.StringIO()
    with time_machine.travel(when, tick=False):
        call_command("forecast", "--account", "ACME", "--meter", "api-calls", stdout=out)
    return out.getvalue()


def store_day(n: int, day: dt.date) -> None:
    """One more day's requests, in the four blocks `store` writes."""
    from accord.gateway.flusher import write_rollups
    from accord.gateway.measure import Tally

    tallies = {}
    for k, hour in enumerate((9, 12, 15, 18)):
        tally = Tally()
        tally.count = n // 4 + (1 if k < n % 4 else 0)
        tally.latency_sum = tally.count * 50.0
        epoch = int(dt.datetime.combine(day, dt.time(hour), dt.UTC).timestamp())
        tallies[(epoch, "ACME", "booking", "", "primary", "ok", "gold")] = tally
    write_rollups(tallies, 60)


@pytest.mark.django_db
def test_an_alert_is_sent_once_retried_when_delivery_failed_and_again_after_it_cleared(
        acme: Account, sink: SmtpSink, receiver: Receiver, client: Any) -> None:  # noqa: F811
    client.force_login(User.objects.create_superuser("boss", "boss@example.org", "pw"))
    values = daily(84)
    values[-1] *= 3  # the last complete day jumps: a `change` alert
    store(values)
    # first run: the SMTP server refuses for now and the webhook answers 500
    sink.refuse("451 4.3.0 Try again later")
    receiver.answers = [500]
    text = forecast(NOW)
    assert "ALERT change: 2026-03-19:" in text
    assert "alerts sent: 1 new, 0 still open (not sent again), 0 cleared; deliveries 0 sent, 3 failed (retried next " \
           "run), 0 given up" in text, text
    undelivered = [line for line in text.splitlines() if line.startswith("  UNDELIVERED")]
    assert len(undelivered) == 3 and all("(1 attempts, retried next run)" in line for line in undelivered)
    assert any("webhook to http://127.0.0.1:" in line and "HTTP Error 500" in line for line in undelivered)
    assert any("email to mia@provider.example" in line and "451" in line for line in undelivered)
    assert not sink.messages and len(receiver.received) == 1
    [alert] = ForecastAlert.objects.all()
    assert (alert.subject, alert.meter, alert.kind, alert.account, alert.cleared_at) == (
        "account ACME", "api-calls", "change", acme, None)
    page = client.get(f"/accounts/{acme.pk}/").content.decode()  # the account page shows the failure
    assert f"not delivered to webhook http://127.0.0.1:{receiver.server_port}/hook (1 attempts, retried by the next " \
           "run): HTTPError" in page
    # the next run raises it again: it is not sent again, but the failed deliveries are retried and go through
    sink.refuse(None)
    text = forecast(NOW + dt.timedelta(hours=2))
    assert "alerts sent: 0 new, 1 still open (not sent again), 0 cleared; deliveries 3 sent, 0 failed" in text, text
    assert "UNDELIVERED" not in text
    mails = {to[0]: msg for _f, to, msg in sink.messages}
    assert sorted(mails) == ["billing@provider.example", "mia@provider.example"]
    mail = mails["mia@provider.example"]
    assert mail["Subject"] == "[Accord] forecast alert (change): account ACME api-calls"
    body = mail.get_payload(decode=True).decode()
    assert body.startswith(alert.message) and "account: Acme (ACME)" in body and "kind: change" in body
    headers, raw = receiver.received[-1]
    assert len(receiver.received) == 2 and headers["x-accord-signature"] == sign("s3", raw)
    assert headers["x-accord-event"] == "billing.forecast_alert"
    hook = json.loads(raw)
    assert (hook["kind"], hook["account"], hook["meter"], hook["alerts"][0]["on"]) == ("change", "ACME", "api-calls",
                                                                                       "2026-03-19")
    assert alert.notifications.filter(sent_at__isnull=False).count() == 3
    page = client.get(f"/accounts/{acme.pk}/").content.decode()
    assert "to mia@provider.example, billing@provider.example, a webhook)" in page and "not delivered" not in page
    # a third run still raising it sends nothing
    forecast(NOW + dt.timedelta(hours=4))
    assert len(sink.messages) == 2 and len(receiver.received) == 2
    # the next day is ordinary: the alert clears; the day after jumps again: a new alert, sent again
    store_day(values[-7] + 35, LAST + dt.timedelta(days=1))  # as the same weekday last week, plus the trend
    text = forecast(NOW + dt.timedelta(days=1))
    assert "ALERT change" not in text and "0 new, 0 still open (not sent again), 1 cleared" in text, text
    assert ForecastAlert.objects.get().cleared_at is not None
    store_day((values[-6] + 35) * 4, LAST + dt.timedelta(days=2))
    text = forecast(NOW + dt.timedelta(days=2))
    assert "ALERT change: 2026-03-21:" in text and "1 new, 0 still open" in text, text
    assert ForecastAlert.objects.filter(cleared_at__isnull=True).count() == 1 and ForecastAlert.objects.count() == 2
    assert len(sink.messages) == 4 and len(receiver.received) == 3


@pytest.mark.django_db
def test_a_dry_run_sends_nothing_and_a_bad_webhook_setting_is_said(acme: Account, sink: SmtpSink, settings: Any,
                                                                  receiver: Receiver) -> None:  # noqa: F811
    values = daily(84)
    values[-1] *= 3
    store(values)
    with time_machine.travel(NOW, tick=False):
        call_command("forecast", "--account", "ACME", "--meter", "api-calls", "--dry-run", stdout=io.StringIO())
    assert not ForecastAlert.objects.exists() and not sink.messages and not receiver.received
    settings.ACCORD_BILLING_ALERT_WEBHOOKS = [{"url": "ftp://nope"}]
    with pytest.raises(CommandError, match=r"ACCORD_BILLING_ALERT_WEBHOOKS\[0\]\.url must start with http:// or "
                                           r"https://; the forecasts are stored, the alerts were not recorded"):
        forecast(NOW)
    assert not ForecastAlert.objects.exists() and not sink.messages


@pytest.mark.django_db
def test_a_webhook_that_never_answers_is_retried_each_run_then_given_up_and_shown(catalog: object,
                                                                                  settings: Any) -> None:
    from accord.billing import alerting
    from accord.billing.forecasting import account_outlooks
    from accord.billing.models import Meter
    from accord.governance.notify import MAX_ATTEMPTS
    from accord.lib.smtp import free_port

    closed = free_port()  # nothing listens there
    settings.ACCORD_BILLING_ALERT_WEBHOOKS = [{"url": f"http://127.0.0.1:{closed}/hook", "secret": ""}]
    acme = account("ACME")
    values = daily(84)
    values[-1] *= 3
    store(values)
    with time_machine.travel(NOW, tick=False):
        outlooks = account_outlooks([acme], Meter.objects.filter(name="api-calls"))
    assert [a.kind for o in outlooks for a in o.alerts] == ["change"]
    runs = []
    for i in range(MAX_ATTEMPTS + 1):  # one run a day
        with time_machine.travel(NOW + dt.timedelta(days=i), tick=False):
            runs.append(alerting.send(outlooks))
    assert [len(r.opened) for r in runs] == [1] + [0] * MAX_ATTEMPTS  # sent (tried) once, as it stays open
    assert [r.counts["retried"] for r in runs] == [1] * (MAX_ATTEMPTS - 1) + [0, 0]
    assert [r.counts["failed"] for r in runs] == [0] * (MAX_ATTEMPTS - 1) + [1, 0]  # given up at the 8th run
    [shown] = runs[-1].undelivered
    assert shown.attempts == MAX_ATTEMPTS and shown.failed_at is not None and "Connection refused" in shown.last_error
    assert alerting.undelivered(shown)["given_up"] is True
    with time_machine.travel(NOW + dt.timedelta(days=MAX_ATTEMPTS + 8), tick=False):
        assert alerting.send(outlooks).undelivered == []  # a week after it was given up, no longer listed
