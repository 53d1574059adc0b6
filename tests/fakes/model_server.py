"""An OpenAI-compatible server on 127.0.0.1 that answers with a real model, for tests of ``models.served``.

    python -m tests.fakes.model_server [--port 8011] [--name chimein] [--adapter none|auto|DIR]

It speaks the part of the protocol that vLLM and llama.cpp's server speak and
``models.served`` uses, so the ``openai`` client talks to it unchanged:

* ``GET /v1/models``;
* ``POST /v1/completions``: a prompt as text or token ids (one, or a batch),
  ``max_tokens``, ``temperature`` 0 only (greedy), ``logprobs`` (top-k per
  generated token), ``echo`` (the prompt's log-probabilities too), ``stop``,
  and vLLM's ``return_tokens_as_token_ids``;
* ``POST /v1/chat/completions``: messages through the tokenizer's chat template, greedy.

No streaming (``models.served`` does not stream). Behind it is whatever model it
is given (the tests give it the session's embedded model); like vLLM's prefix
cache it keeps the KV cache of the last prompt and reuses the shared prefix.
For failure tests, ``faults`` holds what the next requests meet instead of an
answer: an HTTP status (OpenAI's error body), ``MALFORMED`` (a 200 whose body
is not JSON) or ``Slow(seconds)`` (nothing for that long, for a client's timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import deque
from dataclasses import dataclass

import torch
from aiohttp import web
from transformers import DynamicCache

from tests.fakes.openai_server import FakeOpenAIServer, _error

MALFORMED = "malformed"
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for completions


@dataclass(frozen=True)
class Slow:
    seconds: float


class _Runner:
    """Greedy steps over one model, keeping the KV cache of the longest shared prefix."""

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self._ids: list[int] = []
        self._cache = None

    @torch.inference_mode()
    def next_logprobs(self, ids: list[int]) -> torch.Tensor:
        """log P(next token | ids) over the whole vocabulary."""
        shared = 0
        for a, b in zip(self._ids, ids, strict=False):
            if a != b:
                break
            shared += 1
        keep = min(shared, len(ids) - 1)
        if self._cache is None or keep == 0:
            self._cache, keep = DynamicCache(config=self.model.config), 0
        elif keep < len(self._ids):
            self._cache.crop(keep - len(self._ids))
        out = self.model(input_ids=torch.tensor([ids[keep:]]), past_key_values=self._cache, use_cache=True,
                         logits_to_keep=1)
        self._cache, self._ids = out.past_key_values, list(ids)
        return torch.log_softmax(out.logits[0, -1].float(), dim=-1)

    @torch.inference_mode()
    def prompt_logprobs(self, ids: list[int]) -> list[float | None]:
        """log P(ids[i] | ids[:i]) for every position (None for the first), as ``echo`` returns them."""
        logits = self.model(input_ids=torch.tensor([ids])).logits[0].float()
        chosen = torch.log_softmax(logits[:-1], dim=-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
        return [None, *chosen.tolist()]


class ModelServer(FakeOpenAIServer):
    def __init__(self, model, tokenizer, name: str = "chimein", *, api_key: str | None = None, port: int = 0):
        super().__init__(api_key=api_key, port=port)
        self.name = name
        self.tokenizer = tokenizer
        self.faults: deque = deque()
        self.token_ids = True  # honour return_tokens_as_token_ids, as vLLM does (False: as llama.cpp)
        self._model = _Runner(model, tokenizer)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)

    # -- handlers (on the server's own loop, one at a time) ------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        refused = await self._begin(request, None)
        return refused or web.json_response({"object": "list", "data": [
            {"id": self.name, "object": "model", "created": 0, "owned_by": "chimein-tests"}]})

    async def _completions(self, request: web.Request) -> web.Response:
        body, refused = await self._accept(request)
        if refused:
            return refused
        choices = [self._completion_choice(i, ids, body) for i, ids in enumerate(self._prompts(body["prompt"]))]
        return web.json_response({"id": f"cmpl-{next(self._ids)}", "object": "text_completion",
                                  "created": int(time.time()), "model": self.name, "choices": choices})

    async def _chat(self, request: web.Request) -> web.Response:
        body, refused = await self._accept(request)
        if refused:
            return refused
        text = self.tokenizer.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 256
        generated, _, _, finish = self._generate(ids, max_tokens, body.get("stop"), top=None)
        content = self.tokenizer.decode(generated, skip_special_tokens=True)
        return web.json_response({
            "id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion", "created": int(time.time()),
            "model": self.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": len(generated),
                      "total_tokens": len(ids) + len(generated)},
        })

    async def _accept(self, request: web.Request) -> tuple[dict, web.Response | None]:
        """A generation request's body, and the answer to send instead when it is refused or unservable."""
        body = await request.json()
        refused = await self._begin(request, body)
        if refused is None and (problem := self._unservable(body)):
            refused = _error(400, problem, None)
        return body, refused

    async def _begin(self, request: web.Request, body: dict | None) -> web.Response | None:
        """Record the request; a refusal (key, fault) to send instead of an answer, or None."""
        self.requests.append({"path": request.path, "headers": dict(request.headers), "json": body})
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        fault = self.faults.popleft() if self.faults else None
        if isinstance(fault, Slow):
            # The client has given up by then; running the model for nobody would only slow the next test.
            await asyncio.sleep(fault.seconds)
            return _error(503, "answered too late", None)
        if fault == MALFORMED:
            return web.Response(text='{"id": "cmpl-1", "choices": [', content_type="application/json")
        elif isinstance(fault, int):
            return _error(fault, f"scripted HTTP {fault}", None)
        return None

    def _unservable(self, body: dict) -> str | None:
        if body.get("model") != self.name:
            return f"The model `{body.get('model')}` does not exist."
        if body.get("temperature", 1.0) != 0:
            return "this test server is greedy only: send temperature 0"
        if body.get("stream"):
            return "this test server does not stream"
        return None

    # -- the model ------------------------------------------------------------------------

    def _prompts(self, prompt) -> list[list[int]]:
        """OpenAI's four prompt shapes -> a batch of token-id lists."""
        if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
            prompt = [prompt]
        return [self.tokenizer(p, add_special_tokens=False)["input_ids"] if isinstance(p, str) else list(p)
                for p in prompt]

    def _completion_choice(self, index: int, ids: list[int], body: dict) -> dict:
        top = body.get("logprobs")
        as_ids = self.token_ids and bool(body.get("return_tokens_as_token_ids"))
        max_tokens = body.get("max_tokens") or DEFAULT_MAX_TOKENS
        generated, chosen, tops, finish = self._generate(ids, max_tokens, body.get("stop"), top)
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        tokens, logprobs, top_logprobs = generated, chosen, tops
        if body.get("echo"):
            text = self.tokenizer.decode(ids) + text
            tokens, logprobs = ids + generated, self._model.prompt_logprobs(ids) + chosen
            top_logprobs = [None] * len(ids) + tops
        choice = {"index": index, "text": text, "finish_reason": finish, "logprobs": None}
        if top is not None:
            choice["logprobs"] = {
                "tokens": [self._token(t, as_ids) for t in tokens],
                "token_logprobs": logprobs,
                "top_logprobs": [None if entry is None else {self._token(t, as_ids): lp for t, lp in entry}
                                 for entry in top_logprobs],
                "text_offset": [0] * len(tokens),
            }
        return choice

    def _generate(self, ids: list[int], max_tokens: int, stop, top: int | None):
        """Greedy tokens after ``ids`` until end of sequence, a stop string or ``max_tokens``."""
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        generated, chosen, tops = [], [], []
        finish = "length"
        for _ in range(max_tokens):
            logprobs = self._model.next_logprobs(ids + generated)
            token = int(logprobs.argmax())
            if token == self.tokenizer.eos_token_id:
                finish = "stop"
                break
            generated.append(token)
            chosen.append(float(logprobs[token]))
            if top is not None:
                values, indices = logprobs.topk(max(top, 1))
                tops.append(list(zip(indices.tolist(), values.tolist(), strict=True)))
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            if any(s in text for s in stops):
                finish = "stop"
                break
        return generated, chosen, tops, finish

    def _token(self, token_id: int, as_ids: bool) -> str:
        return f"token_id:{token_id}" if as_ids else self.tokenizer.decode([token_id])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.model_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--name", default="chimein", help="the model id it offers (default: chimein)")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--adapter", default="none", help="'none' (default), 'auto' or an adapter folder")
    args = parser.parse_args(argv)
    from models.loading import load_model

    loaded = load_model(args.model, adapter=args.adapter)
    with ModelServer(loaded.model, loaded.tokenizer, args.name, port=args.port) as server:
        print(f"serving {args.name} at {server.base_url} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
