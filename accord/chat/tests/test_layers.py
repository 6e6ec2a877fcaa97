"""The in-memory channel layer the chat uses without Redis: delivers like Channels' own, and walks its channels
and groups to drop expired messages at most every CLEAN_EVERY_S instead of on every send and receive."""

from __future__ import annotations

import asyncio
import time

import pytest

from accord.chat import layers


def test_it_delivers_in_order_and_still_drops_expired_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    walks: list[float] = []
    real = layers.ChannelsInMemoryLayer._clean_expired

    def counted(self: layers.InMemoryChannelLayer) -> None:
        walks.append(time.monotonic())
        real(self)

    monkeypatch.setattr(layers.ChannelsInMemoryLayer, "_clean_expired", counted)
    monkeypatch.setattr(layers, "CLEAN_EVERY_S", 0.2)

    async def scenario() -> tuple[list[int], bool]:
        layer = layers.InMemoryChannelLayer(expiry=0.1)
        for i in range(50):
            await layer.send("chat.one", {"type": "chat.message", "n": i})
        got = [(await layer.receive("chat.one"))["n"] for _ in range(50)]
        await layer.send("chat.two", {"type": "chat.message", "n": -1})
        await asyncio.sleep(0.3)  # past the message's expiry and the cleaning interval
        await layer.send("chat.three", {"type": "chat.message", "n": 0})
        await layer.receive("chat.three")  # this receive walks, and drops chat.two's expired message
        return got, "chat.two" in layer.channels

    got, kept = asyncio.run(scenario())
    assert got == list(range(50)) and not kept
    assert 2 <= len(walks) <= 3, walks  # 51 receives (Channels walks on each), 2 or 3 walks
