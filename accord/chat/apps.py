from __future__ import annotations

from django.apps import AppConfig


class ChatConfig(AppConfig):
    """Live chat (C7's live channel): a desk channel whose tickets are chats, over WebSockets (Channels)."""

    name = "accord.chat"
    default_auto_field = "django.db.models.BigAutoField"
