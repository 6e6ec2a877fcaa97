from __future__ import annotations

from django.apps import AppConfig


class OutreachConfig(AppConfig):
    """Permission-based outreach (C9): consent, segments, campaigns, one-click unsubscribe, suppression, bounces."""

    name = "accord.outreach"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accord.desk import imap

        from . import checks  # registers the DKIM check with `accord doctor`
        from .bounces import take_from_mailbox
        from .metering import register_source

        del checks
        imap.intercept(take_from_mailbox)  # DSNs about campaign mail in the desk's mailboxes: bounces, not tickets
        register_source()  # the `outreach.messages` meter source of billing
