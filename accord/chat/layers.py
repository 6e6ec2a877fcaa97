"""The chat's channel layer when Redis is not configured: Channels' in-memory layer, cleaning less often."""

from __future__ import annotations

import time

from channels.layers import InMemoryChannelLayer as ChannelsInMemoryLayer

CLEAN_EVERY_S = 0.5


class InMemoryChannelLayer(ChannelsInMemoryLayer):
    """Channels' in-memory layer, dropping expired messages and group memberships at most every CLEAN_EVERY_S.

    The stock layer walks every channel and every group on each send and receive; with 500 chat connections
    that walk was a tenth of the server's time (py-spy, bench/chat.py). Messages expire after a minute and
    group memberships after a day, so cleaning twice a second changes nothing a chat can see.
    """

    _cleaned_at = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at < CLEAN_EVERY_S:
            return
        self._cleaned_at = now
        super()._clean_expired()
