"""The `outreach.messages` meter source: campaign messages handed to the SMTP server, per account (docs/billing.md).

Registered with billing from `OutreachConfig.ready()` (billing is below outreach and cannot import it). A message
counts once per recipient of a campaign: the `CampaignSend` row (one per campaign and contact) that the SMTP server
took, by the instant it last took it (`sent_at`, set only when the server accepted the message), whatever came
of it afterwards (a bounce). A sender killed after the server took a message and before it marked the row sends
that message again on resume, with the same Message-ID: the row is still one, so it is counted once. A message
sent again after a soft bounce is counted once, in the period of its last hand-over. Rows refused at sending,
skipped or never sent count nothing. The account is the contact's account when the meter is read.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db.models import Count

from accord.billing.models import Meter
from accord.billing.sources import register

from .models import CampaignSend

SOURCE = "outreach.messages"


def campaign_messages(meter: Meter, ids: list[int], start: dt.datetime, end: dt.datetime) -> dict[int, Decimal]:
    rows = (CampaignSend.objects.filter(contact__account_id__in=ids, sent_at__gte=start, sent_at__lt=end)
            .order_by().values_list("contact__account_id").annotate(n=Count("id")))
    return {account: Decimal(n) for account, n in rows}


def register_source() -> None:
    register(SOURCE, "campaign messages handed to the SMTP server", campaign_messages, ("count",))
