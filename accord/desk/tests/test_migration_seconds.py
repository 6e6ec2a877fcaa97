"""Migrating clocks to targets in seconds keeps every stored clock's target (minutes x 60), and back."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accord.agreements.testing import always_agreement

BEFORE, AFTER = [("desk", "0010_chat_channel")], [("desk", "0011_clock_target_seconds")]


@pytest.mark.django_db(transaction=True)
def test_stored_clocks_keep_their_targets_through_the_migration_and_back() -> None:
    agreement = always_agreement("gold")  # the other apps' tables as they are now
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    Ticket, SlaClock = old.get_model("desk", "Ticket"), old.get_model("desk", "SlaClock")
    calendar = agreement.calendar_id
    ticket = Ticket.objects.create(subject="old", agreement_id=agreement.pk)
    now = dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC)
    for kind, minutes in (("first_response", 30), ("resolution", 960)):
        SlaClock.objects.create(ticket=ticket, kind=kind, calendar_id=calendar, target_minutes=minutes, started_at=now)
    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps.get_model("desk", "SlaClock")
    assert sorted(new.objects.values_list("kind", "target_seconds")) == [("first_response", 1800),
                                                                          ("resolution", 57600)]
    new.objects.filter(kind="first_response").update(target_seconds=30)  # a chat's 30 s
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)  # back: whole minutes, a sub-minute target rounded up to 1
    back = executor.loader.project_state(BEFORE).apps.get_model("desk", "SlaClock")
    assert sorted(back.objects.values_list("kind", "target_minutes")) == [("first_response", 1), ("resolution", 960)]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
