"""A reply to a webhook channel's customer: POSTed, signed, to the channel's reply URL by the outbox.

Apart from `outbound.py` (which queues replies in the outbox) and `outbox.py` (which sends what is due), so the
two never import each other: both import this module, which imports neither.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from .models import Message, WebhookChannel

WEBHOOK_ATTEMPTS = 3  # a refused connection or a 5xx answer is tried again, after 0.5 s and 1 s
WEBHOOK_TIMEOUT = 10.0  # seconds per attempt


class WebhookRefused(Exception):
    """A webhook receiver refused a reply for good (a 4xx answer), or its channel is gone."""


def webhook_id(message_id: str | None, channel: str) -> str:
    """The channel's own id of a message stored as <id@channel.webhook>."""
    suffix = f"@{channel}.webhook>"
    if message_id and message_id.startswith("<") and message_id.endswith(suffix):
        return message_id[1 : -len(suffix)]
    return ""


def post_reply(reply: Message, channel: WebhookChannel) -> None:
    """POST a reply to the channel's reply URL, signed as inbound messages are. Raises what failed.

    Body: {"id", "to", "text", "subject", "in_reply_to", "ticket"}; the customer's answer to it threads onto the
    ticket when it names "id" as its "in_reply_to". A refused connection, a timeout or a 5xx answer is tried
    again at once (`WEBHOOK_ATTEMPTS` in all), then raised as OSError for the outbox to retry later; a 4xx is
    raised as `WebhookRefused`, not retried.
    """
    payload = {
        "id": webhook_id(reply.message_id, channel.name),
        "to": reply.to_addresses[0] if reply.to_addresses else "",
        "text": reply.body_text,
        "subject": reply.subject,
        "in_reply_to": webhook_id(reply.in_reply_to, channel.name),
        "ticket": reply.ticket.reference,
    }
    body = json.dumps(payload, sort_keys=True).encode()
    request = urllib.request.Request(channel.reply_url, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-Accord-Signature": channel.signature(body),
        "X-Accord-Event": "reply", "X-Accord-Delivery": payload["id"], "User-Agent": "accord-desk",
    })
    error: Exception | None = None
    for attempt in range(WEBHOOK_ATTEMPTS):
        if attempt:
            time.sleep(0.5 * 2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
                if 200 <= response.status < 300:
                    return
                error = OSError(f"HTTP {response.status} from {channel.reply_url}")
        except urllib.error.HTTPError as e:
            if e.code < 500:  # the receiver refused this request: the same again would be refused again
                raise WebhookRefused(f"HTTP {e.code} {e.reason} from {channel.reply_url}") from None
            error = OSError(f"HTTP {e.code} {e.reason} from {channel.reply_url}")
        except urllib.error.URLError as e:  # refused, unreachable
            error = OSError(f"{e.reason} ({channel.reply_url})")
        except ValueError as e:  # a malformed URL: the same again fails again
            raise WebhookRefused(f"{type(e).__name__}: {e} ({channel.reply_url})") from None
        except OSError as e:  # timed out
            error = OSError(f"{type(e).__name__}: {e} ({channel.reply_url})")
    assert error is not None
    raise error
