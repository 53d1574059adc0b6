"""A small OpenAI-compatible chat endpoint on 127.0.0.1, for tests of training.generate.

It implements ``POST /v1/chat/completions`` with the response shape of OpenAI, vLLM and
llama.cpp. It records every request (headers and JSON body) and tracks the largest number of
requests in flight at once. It answers from a script of replies, then from a default.

The server runs its own event loop in a background thread. The code under test is
synchronous (urllib in worker threads) and may also run as a subprocess, so the server
must not share the test's event loop::

    with FakeOpenAIServer(api_key="k", answers=["garbage", conversation_json()]) as server:
        generate(..., Endpoint(server.base_url, "some-model", "k"))
        assert len(server.requests) == 2

A reply is the answer text (str), an HTTP status code (int: the error body OpenAI sends),
or a callable that takes the request body and returns one of those.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from aiohttp import web

Reply = str | int | Callable[[dict], "str | int"]


def conversation_json(names: Iterable[str] = ("Ana", "Bo"), speak: bool = True) -> str:
    """A short valid conversation in the data format, as a model would write it."""
    first, second = list(names)[:2]
    conversation = [
        {"role": "user", "name": first, "content": "anyone know when the museum opens?"},
        {"role": "user", "name": second, "content": "no idea tbh"},
    ]
    if speak:
        conversation.append({"role": "assistant", "content": "Most museums open at 10 am."})
    conversation.append({"role": "user", "name": first, "content": "cool thanks"})
    return json.dumps(conversation)


def fenced(text: str) -> str:
    """How chat models like to return JSON: in a fenced block, with chatter around it."""
    return f"Sure! Here is the conversation:\n\n```json\n{text}\n```\n\nAnything else?"


class FakeOpenAIServer:
    def __init__(self, answers: Iterable[Reply] = (), *, api_key: str | None = None,
                 delay_seconds: float = 0.0, default: Reply | None = None, port: int = 0):
        self.answers: deque[Reply] = deque(answers)
        self.default: Reply = default if default is not None else conversation_json()
        self.api_key = api_key
        self.delay_seconds = delay_seconds
        self.requests: list[dict] = []  # {"path", "headers", "json"} in arrival order
        self.in_flight = 0
        self.max_in_flight = 0
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = port  # 0: the OS picks a free one

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # Everything below "async" runs on the server's own loop, one handler at a time,
    # so the counters need no lock.
    async def _chat_completions(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.json()
            self.requests.append({"path": request.path, "headers": dict(request.headers),
                                  "json": body})
            authorization = request.headers.get("Authorization")
            if self.api_key is not None and authorization != f"Bearer {self.api_key}":
                return _error(401, "Incorrect API key provided.", "invalid_api_key")
            if self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
            reply = self.answers.popleft() if self.answers else self.default
            if callable(reply):
                reply = reply(body)
            if isinstance(reply, int):
                return _error(reply, f"scripted HTTP {reply}", None)
            return web.json_response(self._completion(body, reply))
        finally:
            self.in_flight -= 1

    def _completion(self, body: dict, content: str) -> dict:
        prompt_tokens = sum(len(m.get("content", "").split()) for m in body.get("messages", []))
        completion_tokens = len(content.split())
        return {
            "id": f"chatcmpl-fake{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat_completions)

    async def _start(self) -> None:
        app = web.Application()
        self.add_routes(app)
        # A short shutdown: a client thread that connects while the server stops (a worker
        # of a run that already ended) must not hold the test up for aiohttp's default 60 s.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def start(self) -> FakeOpenAIServer:
        self._loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-openai-server", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def prompts(self) -> list[str]:
        """The text of the last message of every recorded request."""
        return [r["json"]["messages"][-1]["content"] for r in self.requests]


def _error(status: int, message: str, code: str | None) -> web.Response:
    # OpenAI's error body; vLLM and llama.cpp send the same shape.
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": code}}
    return web.json_response(body, status=status)
