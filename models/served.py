"""Decisions and replies from a model behind an OpenAI-compatible server (vLLM, llama.cpp's server, Ollama).

Three engines with the in-process engine's interface (``decide``, ``reply``,
``forget``, ``describe``), all synchronous, all through the official ``openai``
client (its timeouts, retries and typed errors):

* ``ServedEngine``: a server hosting the finetuned format (vLLM serving the
  base model with our LoRA adapter, llama.cpp's server with the adapter as
  GGUF). The window is rendered exactly as ``models.engine.Engine`` renders it
  (the same class does the rendering) and sent as token ids to
  ``/v1/completions``. ``decide`` asks for one token with its top
  log-probabilities and reads the ``(response)`` branch against ``(silence)``;
  ``reply`` prefills the response marker and stops at the end-of-turn text.
  The text of a window only grows at its end until the window slides, so the
  server's prefix cache does what the local KV cache does.
* ``ChatReplies``: a general chat model (an 8B instruct model in Ollama, a
  hosted API) that only speaks: ``/v1/chat/completions`` with a short system
  message (``models.policy.REPLY_SYSTEM``) and the window as ``Name: text``
  lines, the bot's earlier words as its own turns.
* ``SplitEngine``: decisions from one engine, replies from another (a cheap
  finetuned gate decides every message, a larger model speaks).

Every failure (unreachable, timed out, an HTTP error, a body that is not what
the protocol promises) is raised as ``ServedError`` naming the server, for the
caller to turn into a silence or a "could not answer" notice.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Hashable, Sequence

import openai

from models.calc import finish_reply
from models.engine import MAX_REPLY_TOKENS, WINDOW_TOKENS, Engine, _RememberingFormat
from models.notes import notes_block
from models.policy import REPLY_SYSTEM
from models.turns import BOT_NAME, RESPONSE, Turn, strip_markers, user_line

TOP_LOGPROBS = 20  # vLLM refuses more unless started with a larger --max-logprobs
REQUEST_TIMEOUT_SECONDS = 30.0
MAX_RETRIES = 1  # the client retries connection errors, 408, 429 and 5xx once, with a short back-off
CHAT_REPLY_TOKENS = 256  # a general model's words are longer per token budget than ours; still 1-3 sentences
CHAT_WINDOW_CHARS = 6000  # the tail of the room a chat model sees (about 1,500 tokens)
NO_API_KEY = "none"  # the client insists on a key; servers started without one ignore it
_THINKING = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)  # reasoning models' preamble


class ServedError(RuntimeError):
    """A served model that could not give an answer: the message names the server and the reason."""


def make_client(base_url: str, api_key: str | None = None,
                timeout_seconds: float = REQUEST_TIMEOUT_SECONDS) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=api_key or NO_API_KEY, timeout=timeout_seconds,
                         max_retries=MAX_RETRIES)


def _call(client: openai.OpenAI, what: str, request):
    """Run one request; every way it can fail becomes a ServedError naming the server."""
    try:
        return request()
    except openai.APITimeoutError as error:
        raise ServedError(f"{client.base_url}: no answer within {client.timeout} s ({what})") from error
    except openai.APIConnectionError as error:
        raise ServedError(f"{client.base_url}: cannot connect ({what}): {error.__cause__ or error}") from error
    except openai.APIStatusError as error:
        raise ServedError(f"{client.base_url}: HTTP {error.status_code} ({what}): {_detail(error)}") from error
    except (openai.OpenAIError, ValueError) as error:  # a 200 whose body is not the promised JSON
        raise ServedError(f"{client.base_url}: unusable answer ({what}): {error}") from error


def _detail(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:200]
    return str(body or error.message)[:200]


def list_models(client: openai.OpenAI) -> list[str]:
    """The model ids the server offers (``GET /v1/models``)."""
    page = _call(client, "listing models", client.models.list)
    return [model.id for model in page.data]


def check_server(base_url: str, model: str, api_key: str | None = None,
                 timeout_seconds: float = REQUEST_TIMEOUT_SECONDS) -> str:
    """A line saying the server offers ``model``, or ServedError naming the URL."""
    client = make_client(base_url, api_key, timeout_seconds)
    try:
        models = list_models(client)
    finally:
        client.close()
    if model not in models:
        offered = ", ".join(models[:10]) or "none"
        raise ServedError(f"{base_url}: does not offer model {model!r} (it offers: {offered})")
    return f"{base_url}: offers {model}"


class ServedEngine(Engine):
    """The finetuned format on a server: the in-process engine's rendering, the server's model.

    A subclass so that the window fitting, the decision tokens and the cleaning
    of replies are the very code ``Engine`` runs: served and in-process
    decisions see the same tokens. Only the two methods that need the model are
    replaced; none of the base class's model code runs here.
    """

    def __init__(self, client: openai.OpenAI, model: str, tokenizer, *, window_tokens: int = WINDOW_TOKENS,
                 max_reply_tokens: int = MAX_REPLY_TOKENS, info: dict | None = None):
        if window_tokens < 128:
            raise ValueError("window_tokens must be at least 128")
        self.client = client
        self.served_model = model
        self.tokenizer = tokenizer
        self.window_tokens = window_tokens
        self.max_reply_tokens = max_reply_tokens
        self.system = None
        self.format = _RememberingFormat(tokenizer, max_turn_tokens=window_tokens // 4)
        self.info = {"model": model, "adapter": None, "device": str(client.base_url), "dtype": "served",
                     **(info or {}), "backend": f"served:{model}@{client.base_url}"}
        self._sessions = OrderedDict()

    def decide(self, window: Sequence[Turn], key: Hashable = "default",
               notes: Sequence[str] | None = None) -> float:
        """Probability (0..1) that the assistant should speak, from the server's log-probabilities."""
        feed, silence_id, response_id = self._decision_tokens(window, self._session(key), notes)
        completion = self._complete(feed, "decision", max_tokens=1, logprobs=TOP_LOGPROBS)
        top = self._top_logprobs(completion)
        silence, response = top.get(silence_id), top.get(response_id)
        missing = [token for token, logprob in ((silence_id, silence), (response_id, response)) if logprob is None]
        if missing:
            # Outside the top few (a very sure model): score the missing branches exactly.
            scored = self._score(feed, missing)
            silence = scored.get(silence_id, silence)
            response = scored.get(response_id, response)
        # Log-probabilities differ by what the logits differ by: the same sigmoid as in-process.
        return 1.0 / (1.0 + math.exp(silence - response))

    def reply(self, window: Sequence[Turn], key: Hashable = "default",
              notes: Sequence[str] | None = None) -> str:
        """The assistant's words, greedy, from the response marker to the end of its turn."""
        prompt, _ = self._fit(window, self._session(key), notes)
        ids = self._encode(prompt + RESPONSE)
        completion = self._complete(ids, "reply", max_tokens=self.max_reply_tokens,
                                    stop=[self.format.end_of_turn])
        try:
            text = completion.choices[0].text
        except (AttributeError, IndexError, TypeError) as error:
            raise ServedError(f"{self.client.base_url}: a completion without text ({error})") from error
        return finish_reply(self.clean(text or ""))

    # -- requests --------------------------------------------------------------------

    def _complete(self, prompt_ids: list[int] | list[list[int]], what: str, **options):
        return _call(self.client, what, lambda: self.client.completions.create(
            model=self.served_model, prompt=prompt_ids, temperature=0.0,
            # vLLM names tokens "token_id:<id>" on request; other servers ignore it and send text.
            extra_body={"return_tokens_as_token_ids": True}, **options))

    def _top_logprobs(self, completion) -> dict[int, float]:
        """The first generated position's top log-probabilities, keyed by token id."""
        try:
            top = completion.choices[0].logprobs.top_logprobs[0]
            return {self._token_id(token): float(logprob) for token, logprob in top.items()}
        except (AttributeError, IndexError, TypeError, ValueError) as error:
            raise ServedError(f"{self.client.base_url}: a completion without top log-probabilities "
                              f"({error}); is it an OpenAI-compatible completions endpoint?") from error

    def _score(self, feed: list[int], token_ids: list[int]) -> dict[int, float]:
        """log P(token | feed) for each token, read from the echoed prompts' log-probabilities (one request)."""
        prompts = [feed + [token_id] for token_id in token_ids]
        completion = self._complete(prompts, "scoring a branch", max_tokens=1, logprobs=0, echo=True)
        try:
            by_index = {choice.index: choice for choice in completion.choices}
            return {token_id: float(by_index[i].logprobs.token_logprobs[len(feed)])
                    for i, token_id in enumerate(token_ids)}
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as error:
            raise ServedError(f"{self.client.base_url}: no prompt log-probabilities with echo ({error}); "
                              "the decision needs a server that returns them (vLLM does)") from error

    def _token_id(self, token: str) -> int:
        if token.startswith("token_id:"):
            return int(token.removeprefix("token_id:"))
        ids = self._encode(token)
        if len(ids) != 1:
            return -1  # a piece that is not one whole token of ours: not a branch
        return ids[0]


class ChatReplies:
    """Replies from a general chat model; it never decides (see ``SplitEngine``)."""

    def __init__(self, client: openai.OpenAI, model: str, *, max_reply_tokens: int = CHAT_REPLY_TOKENS,
                 window_chars: int = CHAT_WINDOW_CHARS, system: str = REPLY_SYSTEM):
        self.client = client
        self.served_model = model
        self.max_reply_tokens = max_reply_tokens
        self.window_chars = window_chars
        self.system = system

    def messages(self, window: Sequence[Turn], notes: Sequence[str] | None = None) -> list[dict]:
        """System message (with the notes, if any), then the room: people's lines as user turns,
        the bot's words as its own.

        Consecutive people's lines share one user message, so user and assistant
        alternate: some chat templates (Llama-2, Mistral) refuse anything else.
        """
        turns = self._tail(window)
        block = notes_block(notes or ())
        messages = [{"role": "system", "content": self.system + ("\n\n" + block if block else "")}]
        for turn in turns:
            role = "user" if turn.role == "user" else "assistant"
            text = user_line(turn.name, turn.text) if role == "user" else strip_markers(turn.text)
            if messages[-1]["role"] == role:
                messages[-1]["content"] += "\n" + text
            elif role == "user" or len(messages) > 1:  # the room starts with a person
                messages.append({"role": role, "content": text})
        return messages

    def reply(self, window: Sequence[Turn], key: Hashable = "default",
              notes: Sequence[str] | None = None) -> str:
        if not window or window[-1].role != "user":
            raise ValueError("the window must end with a person's message")
        completion = _call(self.client, "reply", lambda: self.client.chat.completions.create(
            model=self.served_model, messages=self.messages(window, notes), max_tokens=self.max_reply_tokens,
            temperature=0.0))
        try:
            text = completion.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError) as error:
            raise ServedError(f"{self.client.base_url}: a chat completion without a message ({error})") from error
        return finish_reply(clean_chat_text(text))

    def decide(self, window: Sequence[Turn], key: Hashable = "default",
               notes: Sequence[str] | None = None) -> float:
        raise TypeError("a general chat model gives replies only; decisions come from the finetuned model")

    def forget(self, key: Hashable) -> None:
        """Nothing to forget: every request carries its window."""

    def describe(self) -> dict:
        return {"model": self.served_model, "adapter": None, "device": str(self.client.base_url),
                "dtype": "served", "backend": f"chat:{self.served_model}@{self.client.base_url}"}

    def _tail(self, window: Sequence[Turn]) -> list[Turn]:
        kept: list[Turn] = []
        chars = 0
        for turn in reversed(window):
            chars += len(turn.name) + len(turn.text) + 2
            if kept and chars > self.window_chars:
                break
            kept.append(turn)
        return kept[::-1]


def clean_chat_text(text: str) -> str:
    """A chat model's answer -> text for people: no reasoning preamble, markers or echoed name."""
    text = strip_markers(_THINKING.sub("", text))
    if text.lower().startswith(BOT_NAME + ":"):
        text = text[len(BOT_NAME) + 1 :]
    return text.strip()


class SplitEngine:
    """Decisions from one engine, replies from another: the cheap gate and the strong voice."""

    def __init__(self, decisions, replies):
        self.decisions = decisions
        self.replies = replies

    def decide(self, window: Sequence[Turn], key: Hashable = "default",
               notes: Sequence[str] | None = None) -> float:
        return self.decisions.decide(window, key=key, notes=notes)

    def reply(self, window: Sequence[Turn], key: Hashable = "default",
              notes: Sequence[str] | None = None) -> str:
        return self.replies.reply(window, key=key, notes=notes)

    def forget(self, key: Hashable) -> None:
        self.decisions.forget(key)
        self.replies.forget(key)

    def describe(self) -> dict:
        """The deciding engine's description, with the replying one's beside it."""
        deciding, replying = self.decisions.describe(), self.replies.describe()
        return {**deciding, "backend": deciding.get("backend", "in-process"),
                "reply_model": replying.get("model"), "reply_backend": replying.get("backend", "in-process")}
