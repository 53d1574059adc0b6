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

import functools
import math
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import torch

from models.calc import finish_reply
from models.kernels import linear_kernels
from models.kv_cache import new_cache
from models.template import ChatFormat
from models.turns import BOT_NAME, RESPONSE, SILENCE, WINDOW_TOKENS, Turn, strip_markers

MIN_WINDOW_TOKENS = 128
# After a trim the window fills this share of its budget, so about a third of
# the budget of new messages arrives before the cached prefix is lost again.
# (The share the trim reached before it counted the template's tokens per turn
# exactly, so the cached prefix survives as many messages as it did then.)
KEEP_FRACTION = 0.65
MAX_CACHED_CONVERSATIONS = 8
MAX_REPLY_TOKENS = 128
REMEMBERED_LINES = 4096  # rendered user lines kept across all conversations


class _RememberingFormat(ChatFormat):
    """The chat format, remembering each person's rendered line.

    Every decision re-renders the whole window although only its newest message
    is new, and rendering a line costs a tokenizer call (the clip to the turn
    budget): about a hundred calls per decision without this.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.user_content = functools.lru_cache(maxsize=REMEMBERED_LINES)(self.user_content)


@dataclass(frozen=True)
class CacheState:
    """What the engine holds for one conversation after its last call (for benchmarks, tests and status)."""

    first_turn: Turn | None  # where the window starts now
    cached_tokens: int  # tokens in the KV cache
    fed_tokens: int  # tokens the last forward pass computed (the rest came from the cache)


@dataclass
class _Session:
    """What the engine remembers of one conversation: the cached tokens and where the window starts."""

    ids: list[int] = field(default_factory=list)
    cache: object = None
    first_turn: Turn | None = None
    fed: int = 0


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
        if window_tokens < MIN_WINDOW_TOKENS:
            raise ValueError(f"window_tokens must be at least {MIN_WINDOW_TOKENS}")
        self.model = model
        self.tokenizer = tokenizer
        self.window_tokens = window_tokens
        self.max_reply_tokens = max_reply_tokens
        self.system = system  # only the seed-style prompted baseline uses one
        self.format = _RememberingFormat(tokenizer, max_turn_tokens=window_tokens // 4)
        self.info = info or {}
        self._sessions: OrderedDict[Hashable, _Session] = OrderedDict()
        end_ids = tokenizer(self.format.end_of_turn, add_special_tokens=False)["input_ids"]
        # A reply ends at the end of turn, at EOS, and at any special token: none
        # belongs in words for people, and most open somebody else's turn.
        special_ids = [i for i, t in tokenizer.added_tokens_decoder.items() if t.special]
        self._stop_ids = {tokenizer.eos_token_id, *end_ids[-1:], *special_ids} - {None}
        self._device = next(model.parameters()).device
        self._decoder = model.get_decoder()
        self._kernels = linear_kernels(self._device)
        self._branch_head = self._exact_head()

    # -- public --------------------------------------------------------------------

    def decide(self, window: Sequence[Turn], key: Hashable = "default",
               notes: Sequence[str] | None = None) -> float:
        """Probability (0..1) that the assistant should speak after the window's last turn.

        ``notes``: passages from models/notes.py, rendered at the start of the window.
        """
        session = self._session(key)
        feed, silence_id, response_id = self._decision_tokens(window, session, notes)
        with torch.inference_mode():
            silence, response = self._branch_logits(session, feed, [silence_id, response_id])
        # Only the two branches compete; the rest of the vocabulary does not dilute them.
        return 1.0 / (1.0 + math.exp(silence - response))

    def reply(self, window: Sequence[Turn], key: Hashable = "default",
              temperature: float = 0.0, seed: int = 0, notes: Sequence[str] | None = None) -> str:
        """The assistant's words after the window's last turn, cleaned of markers and control text.

        The prefill is the response marker without its trailing space: the space
        belongs to the first word's token in the trained text, and a separate
        space token would put the model off its training distribution.
        Generation stops at the first turn boundary of the chat template, a
        special token or the same text spelt in plain-text tokens, and the
        words are cut there: what follows would be somebody else's turn.
        """
        session = self._session(key)
        prompt, _ = self._fit(window, session, notes)
        ids = self._encode(prompt + RESPONSE)
        generator = torch.Generator(device=self._device).manual_seed(seed) if temperature > 0 else None
        generated: list[int] = []
        text = ""
        with torch.inference_mode():
            logits = self._forward(session, ids)
            for _ in range(self.max_reply_tokens):
                next_id = self._pick(logits, temperature, generator)
                if next_id in self._stop_ids:
                    break
                generated.append(next_id)
                text, ended = self.format.cut_at_boundary(self.tokenizer.decode(generated))
                if ended:
                    break
                logits = self._forward(session, session.ids + [next_id])
        return finish_reply(self.clean(text))

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

    def cache_state(self, key: Hashable = "default") -> CacheState:
        session = self._sessions.get(key) or _Session()
        return CacheState(session.first_turn, len(session.ids), session.fed)

    def decision_inputs(self, window: Sequence[Turn], key: Hashable = "default",
                        notes: Sequence[str] | None = None) -> tuple[list[int], int, int]:
        """The tokens ``decide`` runs on for this window, and the ``(silence)`` and ``(response)``
        branch tokens it compares after them (for checks of the cache against a full forward pass)."""
        return self._decision_tokens(window, self._session(key), notes)

    def rendered_tokens(self, window: Sequence[Turn], key: Hashable = "default",
                        notes: Sequence[str] | None = None) -> int:
        """How many tokens ``decide`` would feed for this window (for tests and status)."""
        return len(self.decision_inputs(window, key, notes)[0])

    # -- window and tokens ----------------------------------------------------------

    def _session(self, key: Hashable) -> _Session:
        session = self._sessions.pop(key, None) or _Session()
        self._sessions[key] = session
        while len(self._sessions) > MAX_CACHED_CONVERSATIONS:
            self._sessions.popitem(last=False)  # least recently used
        return session

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _decision_tokens(self, window: Sequence[Turn], session: _Session, notes: Sequence[str] | None = None):
        """The shared tokens before the two branches part, and each branch's first own token."""
        prompt, silence = self._fit(window, session, notes)
        response = self._encode(prompt + RESPONSE)
        split = _shared_prefix_length(silence, response)
        return silence[:split], silence[split], response[split]

    def _fit(self, window: Sequence[Turn], session: _Session,
             notes: Sequence[str] | None = None) -> tuple[str, list[int]]:
        """The prompt of the part of the window that fits the token budget, and its tokens up to ``(silence)``.

        The window is trimmed in chunks: the start only moves when the budget is
        exceeded, and then far enough to leave room, so most messages extend the
        cached prefix instead of shifting it. The tokens that measure the window
        are the decision's own (notes included), so a message costs one render and
        two encodes.
        """
        if not window or window[-1].role != "user":
            raise ValueError("the window must end with a person's message")
        start = self._start_index(window, session)
        while True:
            prompt = self.format.prompt(window[start:], self.system, notes)
            silence = self._encode(prompt + SILENCE)
            if len(silence) <= self.window_tokens or start == len(window) - 1:
                break
            start = self._cut(window, start, len(silence) - int(self.window_tokens * KEEP_FRACTION))
        session.first_turn = window[start]
        return prompt, silence

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
            line = self.format.user_content(turn.name, turn.text) if turn.role == "user" else turn.text
            dropped += len(self._encode(line)) + self._turn_overhead
            start += 1
        while start < last and window[start].role != "user":
            start += 1
        return start

    @functools.cached_property
    def _turn_overhead(self) -> int:
        """Tokens the template adds around one more person's line (headers, ends, the silence turn between)."""
        one = [Turn.user("Ana", "hi")]
        added = len(self._encode(self.format.prompt(one * 2))) - len(self._encode(self.format.prompt(one)))
        return max(1, added - len(self._encode(self.format.user_content("Ana", "hi"))))

    # -- model ----------------------------------------------------------------------

    def _feed(self, session: _Session, ids: list[int], module, **kwargs):
        """Run ``module`` (the model or its decoder) over only the tokens the cache does not already hold."""
        # At least one token must be fed to get an output for the last position.
        keep = min(_shared_prefix_length(session.ids, ids), len(ids) - 1)
        if session.cache is None or keep == 0:
            session.cache = new_cache(self.model.config)
            keep = 0
        elif keep < len(session.ids):
            session.cache.crop(keep - len(session.ids))
        new = torch.tensor([ids[keep:]], device=self._device)
        with self._kernels():
            out = module(input_ids=new, past_key_values=session.cache, use_cache=True, **kwargs)
        session.cache = out.past_key_values
        session.ids = list(ids)
        session.fed = len(ids) - keep
        return out

    def _forward(self, session: _Session, ids: list[int]) -> torch.Tensor:
        """Logits over the whole vocabulary after ``ids`` (for generation)."""
        return self._feed(session, ids, self.model, logits_to_keep=1).logits[0, -1].float()

    def _branch_logits(self, session: _Session, ids: list[int], branch_ids: list[int]) -> list[float]:
        """The logits of ``branch_ids`` only, after ``ids``.

        A decision needs two logits: two rows of the LM head over the decoder's last
        hidden state, instead of the whole head (on the embedded model that is
        113 MB of float32 weights read from memory for the other 49,150). Computed
        in float32 whatever the model's dtype.
        """
        if self._branch_head is None:
            return self._forward(session, ids)[branch_ids].tolist()
        hidden = self._feed(session, ids, self._decoder).last_hidden_state[0, -1].float()
        logits = self._branch_head.weight[branch_ids].float() @ hidden
        if self._branch_head.bias is not None:
            logits += self._branch_head.bias[branch_ids].float()
        return logits.tolist()

    def _exact_head(self) -> torch.nn.Linear | None:
        """The LM head when the model's logits are exactly that head over the decoder's output, else None.

        Probed rather than assumed: some models scale or soft-cap their logits
        after the head, and a quantized or adapted head has no plain weight rows.
        """
        head = self.model.get_output_embeddings()
        if type(head) is not torch.nn.Linear:
            return None
        probe = torch.tensor([self._encode(RESPONSE)], device=self._device)
        with torch.inference_mode():
            logits = self.model(input_ids=probe).logits[0, -1]
            hidden = self._decoder(input_ids=probe).last_hidden_state[0, -1]
            exact = torch.allclose(head(hidden), logits, rtol=1e-5, atol=1e-5)
        return head if exact else None

    @staticmethod
    def _pick(logits: torch.Tensor, temperature: float, generator) -> int:
        if temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=generator))

