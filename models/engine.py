"""The decide/reply engine: one cheap forward pass per message, generation only to speak.

``decide`` reads the probability of speaking from the model's next-token
distribution at the point where the assistant's turn begins: the ``(response)``
branch against the ``(silence)`` branch. It runs one forward pass over only the
tokens that are new since the previous call for the same conversation; the KV
cache of the longest shared token prefix is kept. ``reply`` prefills the
response marker and generates greedily until the end-of-turn token.

Synchronous and not thread-safe: the bot calls it from one worker thread.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import torch

from models.template import ChatFormat
from models.turns import BOT_NAME, RESPONSE, SILENCE, Turn, strip_markers

WINDOW_TOKENS = 1024
# After a trim the window fills this share of its budget, so about a quarter of
# the budget of new messages arrives before the cached prefix is lost again.
KEEP_FRACTION = 0.75
MAX_CACHED_CONVERSATIONS = 8
MAX_REPLY_TOKENS = 128


@dataclass
class _Session:
    """What the engine remembers of one conversation: the cached tokens and where the window starts."""

    ids: list[int] = field(default_factory=list)
    cache: object = None
    first_turn: Turn | None = None


def _shared_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class Engine:
    """Decide and reply for any number of conversations, each keyed by a channel id."""

    def __init__(self, model, tokenizer, *, window_tokens: int = WINDOW_TOKENS,
                 max_reply_tokens: int = MAX_REPLY_TOKENS, system: str | None = None,
                 info: dict | None = None):
        if window_tokens < 128:
            raise ValueError("window_tokens must be at least 128")
        self.model = model
        self.tokenizer = tokenizer
        self.window_tokens = window_tokens
        self.max_reply_tokens = max_reply_tokens
        self.system = system  # only the seed-style prompted baseline uses one
        self.format = ChatFormat(tokenizer, max_turn_tokens=window_tokens // 4)
        self.info = info or {}
        self._sessions: OrderedDict[Hashable, _Session] = OrderedDict()
        end_ids = tokenizer(self.format.end_of_turn, add_special_tokens=False)["input_ids"]
        self._stop_ids = {tokenizer.eos_token_id, *end_ids[-1:]} - {None}
        self._device = next(model.parameters()).device

    # -- public --------------------------------------------------------------------

    def decide(self, window: Sequence[Turn], key: Hashable = "default") -> float:
        """Probability (0..1) that the assistant should speak after the window's last turn."""
        session = self._session(key)
        feed, silence_id, response_id = self._decision_tokens(window, session)
        with torch.inference_mode():
            logits = self._forward(session, feed)
        # Only the two branches compete; the rest of the vocabulary does not dilute them.
        return 1.0 / (1.0 + math.exp(float(logits[silence_id] - logits[response_id])))

    def reply(self, window: Sequence[Turn], key: Hashable = "default",
              temperature: float = 0.0, seed: int = 0) -> str:
        """The assistant's words after the window's last turn, cleaned of markers and control text.

        The prefill is the response marker without its trailing space: the space
        belongs to the first word's token in the trained text, and a separate
        space token would put the model off its training distribution.
        """
        session = self._session(key)
        view = self._fit(window, session)
        ids = self._encode(self.format.prompt(view, self.system) + RESPONSE)
        generator = torch.Generator().manual_seed(seed) if temperature > 0 else None
        generated: list[int] = []
        with torch.inference_mode():
            logits = self._forward(session, ids)
            for _ in range(self.max_reply_tokens):
                next_id = self._pick(logits, temperature, generator)
                if next_id in self._stop_ids:
                    break
                generated.append(next_id)
                logits = self._forward(session, session.ids + [next_id])
        return self.clean(self.tokenizer.decode(generated, skip_special_tokens=True))

    def clean(self, text: str) -> str:
        """Model output -> text for people: no markers, no control strings, no echoed name."""
        text = strip_markers(text)
        for control in self.format.control_strings:
            if control in text:
                # A control string means the model ran on into a turn that is not its own.
                text = text[: text.index(control)]
        if text.lower().startswith(BOT_NAME + ":"):
            text = text[len(BOT_NAME) + 1 :]
        return text.strip()

    def forget(self, key: Hashable) -> None:
        self._sessions.pop(key, None)

    def describe(self) -> dict:
        return dict(self.info)

    def rendered_tokens(self, window: Sequence[Turn], key: Hashable = "default") -> int:
        """How many tokens ``decide`` would feed for this window (for tests and status)."""
        feed, _, _ = self._decision_tokens(window, self._session(key))
        return len(feed)

    # -- window and tokens ----------------------------------------------------------

    def _session(self, key: Hashable) -> _Session:
        session = self._sessions.pop(key, None) or _Session()
        self._sessions[key] = session
        while len(self._sessions) > MAX_CACHED_CONVERSATIONS:
            self._sessions.popitem(last=False)  # least recently used
        return session

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _decision_tokens(self, window: Sequence[Turn], session: _Session):
        """The shared tokens before the two branches part, and each branch's first own token."""
        view = self._fit(window, session)
        prompt = self.format.prompt(view, self.system)
        silence, response = self._encode(prompt + SILENCE), self._encode(prompt + RESPONSE)
        split = _shared_prefix_length(silence, response)
        return silence[:split], silence[split], response[split]

    def _fit(self, window: Sequence[Turn], session: _Session) -> Sequence[Turn]:
        """The part of the window that fits the token budget, trimmed in chunks.

        The start only moves when the budget is exceeded, and then far enough to
        leave room, so most messages extend the cached prefix instead of
        shifting it.
        """
        if not window or window[-1].role != "user":
            raise ValueError("the window must end with a person's message")
        start = self._start_index(window, session)
        while True:
            view = window[start:]
            size = len(self._encode(self.format.prompt(view, self.system) + SILENCE))
            if size <= self.window_tokens or start == len(window) - 1:
                break
            start = self._cut(window, start, size - int(self.window_tokens * KEEP_FRACTION))
        session.first_turn = window[start]
        return view

    @staticmethod
    def _start_index(window: Sequence[Turn], session: _Session) -> int:
        if session.first_turn is not None:
            for i, turn in enumerate(window):
                if turn == session.first_turn:
                    return i
        return 0

    def _cut(self, window: Sequence[Turn], start: int, excess_tokens: int) -> int:
        """The index after dropping about ``excess_tokens`` worth of old turns; a user turn."""
        dropped = 0
        last = len(window) - 1
        while start < last and dropped < excess_tokens:
            turn = window[start]
            dropped += len(self._encode(turn.name + ": " + turn.text)) + 8  # + template overhead
            start += 1
        while start < last and window[start].role != "user":
            start += 1
        return start

    # -- model ----------------------------------------------------------------------

    def _forward(self, session: _Session, ids: list[int]) -> torch.Tensor:
        """Logits after ``ids``, computing only the tokens the cache does not already hold."""
        from transformers import DynamicCache

        # At least one token must be fed to get logits for the last position.
        keep = min(_shared_prefix_length(session.ids, ids), len(ids) - 1)
        if session.cache is None or keep == 0:
            session.cache = DynamicCache(config=self.model.config)
            keep = 0
        elif keep < len(session.ids):
            session.cache.crop(keep - len(session.ids))
        new = torch.tensor([ids[keep:]], device=self._device)
        out = self.model(input_ids=new, past_key_values=session.cache, use_cache=True, logits_to_keep=1)
        session.cache = out.past_key_values
        session.ids = list(ids)
        return out.logits[0, -1].float()

    @staticmethod
    def _pick(logits: torch.Tensor, temperature: float, generator) -> int:
        if temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=generator))

