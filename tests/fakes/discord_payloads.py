"""The JSON objects the fake Discord sends, shaped the way discord.py 2.7 reads them.

Only the fields the client parses are filled in; each one that is missing
breaks parsing in a specific place (a member without ``flags`` raises KeyError,
an interaction without ``attachment_size_limit`` too). Ids are strings, as on
Discord. See /work/shared/notes/discord-fake.md for how these were verified.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

MANAGE_CHANNELS = 1 << 4
ADMINISTRATOR = 1 << 3
READ_MESSAGE_HISTORY = 1 << 16
ALL_PERMISSIONS = (1 << 50) - 1
MESSAGE_CONTENT_INTENT = 1 << 15
OPTION_TYPES = {str: 3, int: 4, bool: 5, float: 10}


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def user(user_id: int, name: str, *, bot: bool = False) -> dict:
    data = {"id": str(user_id), "username": name.lower(), "global_name": name, "discriminator": "0",
            "avatar": None, "public_flags": 0}
    if bot:
        data["bot"] = True
    return data


def member() -> dict:
    """The partial member that rides along with a user in guild events."""
    return {"roles": [], "joined_at": now_iso(), "deaf": False, "mute": False, "flags": 0, "nick": None,
            "pending": False}


def text_channel(channel_id: int, guild_id: int, name: str, position: int) -> dict:
    return {"id": str(channel_id), "type": 0, "name": name, "position": position, "guild_id": str(guild_id),
            "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None,
            "last_message_id": None, "rate_limit_per_user": 0}


def guild(guild_id: int, owner: dict, channels: Mapping[str, int], bot_user: dict,
          permissions: int = ALL_PERMISSIONS) -> dict:
    """The guild; ``permissions`` is what @everyone (and so the bot, which has no other role) may do."""
    everyone = {"id": str(guild_id), "name": "@everyone", "permissions": str(permissions), "position": 0,
                "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}
    return {
        "id": str(guild_id), "name": "Fake Guild", "icon": None, "owner_id": owner["id"],
        "unavailable": False, "member_count": 2, "large": False, "features": [], "roles": [everyone],
        "emojis": [], "stickers": [], "threads": [], "presences": [], "voice_states": [],
        "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
        "joined_at": now_iso(), "verification_level": 0, "default_message_notifications": 0,
        "explicit_content_filter": 0, "mfa_level": 0, "premium_tier": 0, "preferred_locale": "en-US",
        "nsfw_level": 0,
        "channels": [text_channel(channel_id, guild_id, name, position)
                     for position, (name, channel_id) in enumerate(channels.items())],
        "members": [{**member(), "user": bot_user}],
    }


def message(message_id: int, channel_id: int, author: dict, content: str, *, guild_id: int | None,
            mentions: Iterable[dict] = (), reply_to: dict | None = None) -> dict:
    """A message as the gateway sends it (guild messages carry ``guild_id`` and ``member``)."""
    data = {
        "id": str(message_id), "channel_id": str(channel_id), "author": author, "content": content,
        "timestamp": now_iso(), "edited_timestamp": None, "tts": False, "mention_everyone": False,
        "mentions": [], "mention_roles": [], "attachments": [], "embeds": [], "pinned": False,
        "type": 0, "flags": 0, "components": [],
    }
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
        data["member"] = member()
    for mentioned in mentions:
        in_guild = guild_id is not None
        data["mentions"].append({**mentioned, "member": member()} if in_guild else dict(mentioned))
    if reply_to is not None:
        data["type"] = 19  # reply: discord.py reads the parent from referenced_message
        data["message_reference"] = {"type": 0, "message_id": reply_to["id"],
                                     "channel_id": reply_to["channel_id"],
                                     "guild_id": reply_to.get("guild_id")}
        data["referenced_message"] = reply_to
    return data


def rest_view(message_data: dict) -> dict:
    """A message as REST returns it: no member object and no guild_id, as on Discord."""
    return {k: v for k, v in message_data.items() if k not in ("member", "guild_id")}


def application(application_id: int, name: str, owner: dict) -> dict:
    return {"id": str(application_id), "name": name, "icon": None, "description": "", "summary": "",
            "type": None, "hook": True, "bot_public": True, "bot_require_code_grant": False,
            "verify_key": "0" * 64, "flags": 0, "owner": owner, "team": None,
            "interactions_endpoint_url": None, "redirect_uris": [], "rpc_origins": []}


def ready(bot_user: dict, guild_id: int, application_id: int, session_id: str, gateway_url: str) -> dict:
    return {"v": 10, "user": bot_user, "guilds": [{"id": str(guild_id), "unavailable": True}],
            "session_id": session_id, "resume_gateway_url": gateway_url,
            "application": {"id": str(application_id), "flags": 0},
            "private_channels": [], "relationships": [], "presences": [], "shard": [0, 1]}


def slash_command(interaction_id: int, application_id: int, guild_id: int, channel_id: int, person: dict,
                  command_id: str, name: str, options: Mapping[str, object], permissions: int) -> dict:
    """An INTERACTION_CREATE for a chat-input command run in a guild channel."""
    return {
        "id": str(interaction_id), "application_id": str(application_id), "type": 2,
        "token": f"token-{interaction_id}", "version": 1, "channel_id": str(channel_id),
        "guild_id": str(guild_id), "channel": {"id": str(channel_id), "type": 0, "guild_id": str(guild_id)},
        "member": {**member(), "user": person, "permissions": str(permissions)},
        "app_permissions": str(ALL_PERMISSIONS), "locale": "en-US", "guild_locale": "en-US",
        "attachment_size_limit": 10 * 1024 * 1024, "entitlements": [],
        "authorizing_integration_owners": {"0": str(guild_id)}, "context": 0,
        "data": {"id": command_id, "name": name, "type": 1,
                 "options": [{"name": k, "type": OPTION_TYPES[type(v)], "value": v}
                             for k, v in options.items()]},
    }
