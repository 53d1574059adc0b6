"""A fake Discord on 127.0.0.1 that the real discord.py 2.7 client accepts.

Discord's servers are out of reach here, so the bot's end-to-end tests run the
real ``discord.Client`` against this server. It speaks the real protocol:

- the gateway websocket: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats
  answered with ACKs (their arrival times are recorded), RESUME answered with
  "invalid session", and MESSAGE_CREATE / MESSAGE_UPDATE / MESSAGE_DELETE /
  INTERACTION_CREATE dispatches that tests inject;
- the REST routes the client calls: current user, application, gateway URL,
  create message (every payload is recorded, with its ``allowed_mentions`` and
  ``message_reference``), channel history, typing, application commands and
  interaction callbacks. Anything else answers 404 and lands in ``unknown``.
  With ``read_message_history=False`` it refuses replies (403, code 160002) and
  returns empty history, as Discord does; ``commands_answer`` replaces the
  answer to a global command sync.

The JSON shapes live in discord_payloads.py. Tests drive people with ``say`` /
``edit`` / ``delete`` / ``command`` and read what the bot did from ``posts``,
``typing``, ``heartbeats`` and ``identifies``.
``pings(post)`` says whom a posted message would notify under Discord's
allowed-mentions rules. Use a short ``heartbeat_seconds`` to keep tests fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp
import discord
import yarl
from aiohttp import web

from tests.fakes import discord_payloads as payloads
from tests.fakes.discord_payloads import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    MANAGE_CHANNELS,
    MESSAGE_CONTENT_INTENT,
    READ_MESSAGE_HISTORY,
)

DISCORD_EPOCH_MS = 1420070400000
API_PREFIX = "/api/v10"

# Op codes of the gateway protocol.
DISPATCH, HEARTBEAT, IDENTIFY, RESUME, HELLO, INVALID_SESSION, HEARTBEAT_ACK = 0, 1, 2, 6, 10, 9, 11


def _json(data, status: int = 200) -> web.Response:
    # discord.py only parses bodies whose Content-Type is exactly application/json;
    # web.json_response appends "; charset=utf-8" and the client then sees text.
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json"})


@dataclass
class Post:
    """One message the bot created through REST."""

    channel_id: int
    payload: dict
    message: dict
    at: float = field(default_factory=time.monotonic)

    @property
    def content(self) -> str:
        return self.payload.get("content") or ""

    @property
    def reference_id(self) -> int | None:
        ref = self.payload.get("message_reference")
        return int(ref["message_id"]) if ref else None


class FakeDiscord:
    """One guild with text channels, a bot user, and the people tests add."""

    def __init__(self, *, heartbeat_seconds: float = 0.5, bot_name: str = "Sage",
                 channels: Iterable[str] = ("general", "random"), token: str | None = None,
                 message_content_enabled: bool = True, read_message_history: bool = True) -> None:
        self.heartbeat_seconds = heartbeat_seconds
        self.token = token  # when set, any other token is refused with 401, as Discord does
        self.message_content_enabled = message_content_enabled  # the portal's privileged-intent switch
        # Without Read Message History (and without Administrator, which implies it) Discord
        # refuses replies with 403 / code 160002 and answers history reads with an empty list.
        self.bot_permissions = ALL_PERMISSIONS if read_message_history else (
            ALL_PERMISSIONS & ~READ_MESSAGE_HISTORY & ~ADMINISTRATOR)
        self.commands_answer: tuple[int, object] | None = None  # (status, body) to answer command syncs with
        self.refused: list[dict] = []  # create-message payloads refused for a missing permission
        self._ids = itertools.count(1)
        self.guild_id = self.snowflake()
        self.application_id = self.snowflake()
        self.bot = payloads.user(self.application_id, bot_name, bot=True)
        self.owner = self.add_person("Owner")
        self.channels: dict[str, int] = {name: self.snowflake() for name in channels}
        self.messages: dict[int, list[dict]] = {cid: [] for cid in self.channels.values()}
        self.dm_channels: dict[int, int] = {}  # person id -> DM channel id

        self.created_ids: list[int] = []  # every MESSAGE_CREATE dispatched, people's and the bot's
        self.posts: list[Post] = []
        self.typing: list[tuple[int, float]] = []
        self.heartbeats: list[float] = []
        self.hello_at: float | None = None  # when the last gateway connection got its HELLO
        self.identifies: list[dict] = []
        self.commands: dict[str, list[dict]] = {}
        self.interaction_responses: list[dict] = []
        self.unknown: list[str] = []

        self._sockets: set[web.WebSocketResponse] = set()
        self._sequence = 0
        self._post_event = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- ids and people ----------------------------------------------------

    def snowflake(self) -> int:
        """A fresh id whose timestamp is now, increasing like Discord's."""
        return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) + next(self._ids)

    def add_person(self, name: str, *, bot: bool = False) -> dict:
        """A new user (a person, or another bot with ``bot=True``)."""
        return payloads.user(self.snowflake(), name, bot=bot)

    def _message(self, channel_id: int, author: dict, content: str, **kwargs) -> dict:
        in_guild = channel_id in self.channels.values()
        return payloads.message(self.snowflake(), channel_id, author, content,
                                guild_id=self.guild_id if in_guild else None, **kwargs)

    # -- what tests do -----------------------------------------------------

    def mention(self, user: dict) -> str:
        return f"<@{user['id']}>"

    async def say(self, channel: str | int, author: dict, content: str, *,
                  mentions: Iterable[dict] = (), reply_to: dict | None = None) -> dict:
        """A person posts ``content``: stored in history and dispatched as MESSAGE_CREATE."""
        channel_id = self._channel_id(channel)
        message = self._message(channel_id, author, content, mentions=mentions, reply_to=reply_to)
        self.messages[channel_id].append(message)
        await self.dispatch("MESSAGE_CREATE", message)
        return message

    async def say_offline(self, channel: str | int, author: dict, content: str) -> dict:
        """A message that lands in history while the bot is disconnected (no dispatch)."""
        channel_id = self._channel_id(channel)
        message = self._message(channel_id, author, content)
        self.messages[channel_id].append(message)
        return message

    async def edit(self, message: dict, content: str) -> dict:
        message.update(content=content, edited_timestamp=payloads.now_iso())
        await self.dispatch("MESSAGE_UPDATE", message)
        return message

    async def delete(self, message: dict) -> None:
        channel_id = int(message["channel_id"])
        self.messages[channel_id] = [m for m in self.messages[channel_id] if m["id"] != message["id"]]
        data = {"id": message["id"], "channel_id": message["channel_id"]}
        if "guild_id" in message:
            data["guild_id"] = message["guild_id"]
        await self.dispatch("MESSAGE_DELETE", data)

    def dm_channel(self, person: dict) -> int:
        """The id of the DM channel between ``person`` and the bot."""
        person_id = int(person["id"])
        if person_id not in self.dm_channels:
            channel_id = self.snowflake()
            self.dm_channels[person_id] = channel_id
            self.messages[channel_id] = []
        return self.dm_channels[person_id]

    async def command(self, channel: str | int, user: dict, name: str, options: dict | None = None,
                      *, permissions: int = MANAGE_CHANNELS, timeout: float = 5.0) -> dict:
        """A person runs slash command ``name``; returns the bot's interaction response."""
        interaction_id = self.snowflake()
        command_id = next((c["id"] for c in self.commands.get("global", []) if c["name"] == name), "0")
        data = payloads.slash_command(interaction_id, self.application_id, self.guild_id,
                                      self._channel_id(channel), user, command_id, name, options or {},
                                      permissions)
        before = len(self.interaction_responses)
        await self.dispatch("INTERACTION_CREATE", data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for response in self.interaction_responses[before:]:
                if response["interaction_id"] == str(interaction_id):
                    return response["payload"]
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no response to /{name} within {timeout} s")

    async def wait_for_posts(self, count: int, timeout: float = 10.0) -> list[Post]:
        """Wait until the bot has posted at least ``count`` messages in total."""
        deadline = time.monotonic() + timeout
        while len(self.posts) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"expected {count} posts, got {len(self.posts)}: "
                                   f"{[p.content[:60] for p in self.posts]}")
            self._post_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._post_event.wait(), remaining)
        return self.posts

    def longest_heartbeat_gap(self) -> float:
        """The longest time the client went without a heartbeat, from its HELLO until now.

        Counting from HELLO and up to now means a run shorter than one interval
        still has a gap to check, and a client that stopped beating shows it.
        """
        if self.hello_at is None:
            raise AssertionError("the client never connected to the gateway")
        beats = [self.hello_at, *(t for t in self.heartbeats if t >= self.hello_at), time.monotonic()]
        return max(b - a for a, b in zip(beats, beats[1:], strict=False))

    def pings(self, post: Post) -> set[str]:
        """Whom ``post`` would notify, following Discord's allowed-mentions rules."""
        content = post.content
        allowed = post.payload.get("allowed_mentions")
        parse = {"everyone", "users", "roles"} if allowed is None else set(allowed.get("parse", []))
        users = set() if allowed is None else set(allowed.get("users", []))
        pinged = set()
        if "everyone" in parse and re.search(r"@(everyone|here)", content):
            pinged.add("everyone")
        for user_id in re.findall(r"<@!?(\d+)>", content):
            if "users" in parse or user_id in users:
                pinged.add(user_id)
        for role_id in re.findall(r"<@&(\d+)>", content):
            if "roles" in parse or role_id in (allowed or {}).get("roles", []):
                pinged.add(f"role:{role_id}")
        # A reply pings its parent's author unless allowed_mentions is sent without replied_user.
        if post.reference_id and (allowed is None or allowed.get("replied_user", False)):
            pinged.add("replied_user")
        return pinged

    def _channel_id(self, channel: str | int) -> int:
        return self.channels[channel] if isinstance(channel, str) else int(channel)

    # -- server life -------------------------------------------------------

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @contextlib.contextmanager
    def pointed_at(self):
        """Point discord.py's REST base and gateway at this server for the block."""
        old_base, old_gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield self
        finally:
            discord.http.Route.BASE = old_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    # -- gateway -----------------------------------------------------------

    async def dispatch(self, event: str, data: dict) -> None:
        """Send a dispatch to every connected client."""
        if event == "MESSAGE_CREATE":
            self.created_ids.append(int(data["id"]))
        self._sequence += 1
        frame = json.dumps({"op": DISPATCH, "t": event, "s": self._sequence, "d": data})
        for ws in list(self._sockets):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(frame)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.hello_at = time.monotonic()
        await ws.send_json({"op": HELLO, "d": {"heartbeat_interval": int(self.heartbeat_seconds * 1000)}})
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            payload = json.loads(frame.data)
            op = payload.get("op")
            if op == HEARTBEAT:
                self.heartbeats.append(time.monotonic())
                await ws.send_json({"op": HEARTBEAT_ACK})
            elif op == IDENTIFY:
                self.identifies.append(payload["d"])
                if payload["d"]["intents"] & MESSAGE_CONTENT_INTENT and not self.message_content_enabled:
                    await ws.close(code=4014, message=b"Disallowed intent(s).")
                    break
                self._sockets.add(ws)
                await self._send_ready(ws)
            elif op == RESUME:
                await ws.send_json({"op": INVALID_SESSION, "d": False})
        self._sockets.discard(ws)
        return ws

    async def _send_ready(self, ws: web.WebSocketResponse) -> None:
        ready = payloads.ready(self.bot, self.guild_id, self.application_id,
                               f"session-{len(self.identifies)}", self.gateway_url)
        guild = payloads.guild(self.guild_id, self.owner, self.channels, self.bot, self.bot_permissions)
        for event, data in (("READY", ready), ("GUILD_CREATE", guild)):
            self._sequence += 1
            await ws.send_json({"op": DISPATCH, "t": event, "s": self._sequence, "d": data})

    # -- REST --------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        signed = not path.startswith("/interactions/")  # callbacks are authorised by their own token
        if signed and self.token is not None and request.headers.get("Authorization") != f"Bot {self.token}":
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        body = await request.json() if request.can_read_body else None
        if request.method == "POST" and (hit := re.fullmatch(r"/interactions/(\d+)/[^/]+/callback", path)):
            return self._interaction_callback(hit[1], body)
        route = (request.method, re.sub(r"/\d+", "/{id}", path))
        match route:
            case ("GET", "/users/@me"):
                return _json(self.bot)
            case ("GET", "/oauth2/applications/@me"):
                return _json(payloads.application(self.application_id, self.bot["global_name"], self.owner))
            case ("GET", "/gateway") | ("GET", "/gateway/bot"):
                return _json({"url": self.gateway_url, "shards": 1,
                              "session_start_limit": {"total": 1000, "remaining": 1000,
                                                      "reset_after": 0, "max_concurrency": 1}})
            case ("POST", "/channels/{id}/messages"):
                return await self._create_message(int(path.split("/")[2]), body)
            case ("GET", "/channels/{id}/messages"):
                return self._history(int(path.split("/")[2]), request.query)
            case ("POST", "/channels/{id}/typing"):
                self.typing.append((int(path.split("/")[2]), time.monotonic()))
                return web.Response(status=204)
            case ("PUT", "/applications/{id}/commands") if self.commands_answer is not None:
                status, answer = self.commands_answer
                return _json(answer, status=status)
            case ("PUT", "/applications/{id}/commands"):
                return _json(self._register_commands("global", body))
            case ("PUT", "/applications/{id}/guilds/{id}/commands"):
                return _json(self._register_commands(path.split("/")[4], body))
        self.unknown.append(f"{request.method} {path}")
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    async def _create_message(self, channel_id: int, body: dict) -> web.Response:
        if channel_id not in self.messages:
            return _json({"message": "Unknown Channel", "code": 10003}, status=404)
        content = body.get("content") or ""
        if len(content) > 2000:
            return _json({"message": "Invalid Form Body", "code": 50035,
                          "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}}},
                         status=400)
        reference = body.get("message_reference")
        parent = None
        if reference and not self._may_read_history:
            self.refused.append(body)
            return _json({"message": "Cannot reply without permission to read message history",
                          "code": 160002}, status=403)
        if reference:
            parent_id = str(reference["message_id"])
            parent = next((m for m in self.messages[channel_id] if m["id"] == parent_id), None)
        message = self._message(channel_id, self.bot, content, reply_to=parent)
        self.messages[channel_id].append(message)
        self.posts.append(Post(channel_id, body, message))
        self._post_event.set()
        await self.dispatch("MESSAGE_CREATE", message)
        return _json(payloads.rest_view(message))

    @property
    def _may_read_history(self) -> bool:
        return bool(self.bot_permissions & (READ_MESSAGE_HISTORY | ADMINISTRATOR))

    def _history(self, channel_id: int, query) -> web.Response:
        messages = self.messages.get(channel_id, []) if self._may_read_history else []
        limit = int(query.get("limit", 50))
        if "before" in query:
            messages = [m for m in messages if int(m["id"]) < int(query["before"])]
        if "after" in query:
            messages = [m for m in messages if int(m["id"]) > int(query["after"])]
        newest_first = sorted(messages, key=lambda m: int(m["id"]), reverse=True)[:limit]
        return _json([payloads.rest_view(m) for m in newest_first])

    def _register_commands(self, scope: str, body: list[dict]) -> list[dict]:
        # Discord answers with ids added and the permission bit set as a string.
        permissions = [c.get("default_member_permissions") for c in body]
        registered = [{**c, "id": str(self.snowflake()), "application_id": str(self.application_id),
                       "version": "1", "default_member_permissions": None if p is None else str(p)}
                      for c, p in zip(body, permissions, strict=True)]
        self.commands[scope] = registered
        return registered

    def _interaction_callback(self, interaction_id: str, body: dict) -> web.Response:
        self.interaction_responses.append({"interaction_id": interaction_id, "payload": body})
        data = body.get("data") or {}
        return _json({"interaction": {"id": interaction_id, "type": 2, "response_message_id": None,
                                      "response_message_loading": False,
                                      "response_message_ephemeral": bool(data.get("flags", 0) & 64)}})
