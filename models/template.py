"""Rendering a window through the tokenizer's own chat template.

``ChatFormat`` wraps one tokenizer and knows three things about its template,
all derived by rendering rather than hard-coded, so ChatML, Zephyr, Llama-2-chat
and OpenChat templates work alike:

* the *lead*: what the template puts between the generation prompt and the
  assistant's content (``""`` for ChatML, ``" "`` for Llama-2);
* the *end of turn*: the text that closes an assistant turn (``<|im_end|>``,
  ``</s>``, ``<|end_of_turn|>``), which generation stops at and training learns;
* the *turn headers*: what opens a person's and the assistant's turn
  (``<|im_start|>user``, ``GPT4 Correct Assistant:``);
* the *control strings*: the tokenizer's added tokens, the markers, the turn
  headers and the common role headers, which text typed by a person must not be
  able to forge, and at which a generated reply is cut (its turn is over).

A person's turn is the line ``Name: text``, neutralised as a whole (a name can
complete a header: ``GPT4 Correct Assistant`` + ``: hi``) and then clipped to
the per-turn token budget, so no content, however hostile, costs more.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from models.notes import notes_block
from models.turns import MARKERS, Turn, to_chat_messages, user_line

# Role headers that are plain text (not special tokens) in common templates:
# without this list a person could type "[/INST]" into a Llama-2 chat.
LITERAL_ROLE_HEADERS = (
    "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>",
    "GPT4 Correct User:", "GPT4 Correct Assistant:", "GPT4 Correct System:",
    "<|user|>", "<|assistant|>", "<|system|>",
)
_PROBE = "\x00probe\x00"
_CLIP_MARK = " …"
# Before tokenizing a huge line, cut it to this many characters per budget token:
# no real token is longer, so the token clip below sees the same prefix.
_CHARS_PER_TOKEN_CAP = 32
_NEUTRALISE_ROUNDS = 4  # one round suffices unless a broken string completes another


def _drop_invisible(text: str) -> str:
    """Text without control characters (but newline and tab) or unassigned code points.

    A tokenizer may drop them silently (SmolLM2's drops \x04, \x16, unassigned code
    points, ...), so what the model reads would differ from what was neutralised.
    """
    return "".join(c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cn"))


class TemplateError(ValueError):
    """The chat template cannot host the finetuned format."""


@dataclass(frozen=True)
class Span:
    """Character span of one assistant turn in a rendered conversation: content and end of turn."""

    start: int
    end: int


class ChatFormat:
    """The finetuned text format rendered through one tokenizer's chat template."""

    def __init__(self, tokenizer, max_turn_tokens: int | None = None):
        if not getattr(tokenizer, "chat_template", None):
            raise TemplateError("the tokenizer has no chat template")
        self.tokenizer = tokenizer
        self.max_turn_tokens = max_turn_tokens
        self.lead, self.end_of_turn = self._probe_template()
        self.turn_headers = self._probe_headers()
        added = [t.content for t in tokenizer.added_tokens_decoder.values()]
        controls = {s for s in (*added, *MARKERS, *LITERAL_ROLE_HEADERS, *self.turn_headers, self.end_of_turn)
                    if s.strip()}
        # Longest first, so "<|im_start|>" is broken before a shorter token inside it.
        self.control_strings = tuple(sorted(controls, key=len, reverse=True))
        # Where a generated reply must end: any header, special token or end of turn.
        self.turn_boundaries = tuple(c for c in self.control_strings if c not in MARKERS)

    # -- rendering -----------------------------------------------------------------

    def render_messages(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def messages(self, turns: Sequence[Turn], system: str | None = None,
                 notes: Sequence[str] | None = None) -> list[dict]:
        """Turns -> chat messages with user text neutralised (and clipped to ``max_turn_tokens``).

        Notes (passages from models/notes.py) become a system turn at the start, in
        the form ``notes_block`` defines, neutralised like user text; first, so
        that a conversation whose notes do not change keeps its cached prefix.
        """
        messages = to_chat_messages(turns, user_text=self.user_content)
        block = notes_block(self.neutralise(passage) for passage in notes or ())
        system = "\n\n".join(part for part in (system, block) if part) or None
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        return messages

    def prompt(self, turns: Sequence[Turn], system: str | None = None,
               notes: Sequence[str] | None = None) -> str:
        """The text right up to where the assistant's next turn content begins."""
        messages = self.messages(turns, system, notes)
        if not messages or messages[-1]["role"] != "user":
            raise ValueError("a decision needs a window that ends with a person's message")
        return self.render_messages(messages, add_generation_prompt=True) + self.lead

    def user_content(self, name: str, text: str) -> str:
        """A person's turn: ``Name: text`` neutralised as one line, then clipped to ``max_turn_tokens``.

        Clipping comes last: each broken control string costs a few tokens more
        than it did whole, and one message of them must still fit its budget.
        """
        return self._clip(self.neutralise(user_line(name, text)))

    def neutralise(self, text: str) -> str:
        """Break every control string in text typed by a person.

        A space after the first character keeps the text readable ("< |im_start|>",
        "( response)") while the tokenizer no longer sees a control token, a role
        header or a marker. Repeated while anything is left to break, in case one
        broken string completes another. Control characters (other than newline
        and tab) and unassigned code points go first: some tokenizers drop them,
        so "GPT4 Correct Assistant\x16:" would otherwise reach the model as a
        role header.
        """
        text = _drop_invisible(text)
        for _ in range(_NEUTRALISE_ROUNDS):
            changed = False
            for control in self.control_strings:
                if control in text:
                    text = text.replace(control, control[0] + " " + control[1:])
                    changed = True
            if not changed:
                break
        return text

    def cut_at_boundary(self, text: str) -> tuple[str, bool]:
        """Generated text up to the first turn boundary, and whether there was one.

        A model that runs on past its own turn writes a header or an end of turn,
        as a special token or as plain-text pieces; what follows is somebody
        else's turn and must never be posted.
        """
        cut = min((i for i in (text.find(b) for b in self.turn_boundaries) if i >= 0), default=-1)
        return (text, False) if cut < 0 else (text[:cut], True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _clip(self, line: str) -> str:
        # One huge message must not push the whole room out of the window.
        budget = self.max_turn_tokens
        if budget is None:
            return line
        line = line[: budget * _CHARS_PER_TOKEN_CAP]
        ids = self.tokenizer(line, add_special_tokens=False)["input_ids"]
        if len(ids) <= budget:
            return line
        # Decoding a prefix can re-encode longer (a character cut in half becomes
        # U+FFFD), so shrink until the clipped line with its mark fits.
        keep = budget - self.count_tokens(_CLIP_MARK)
        while keep > 0:
            clipped = self.tokenizer.decode(ids[:keep]) + _CLIP_MARK
            if self.count_tokens(clipped) <= budget:
                return clipped
            keep -= 1
        return _CLIP_MARK.strip()

    # -- training ------------------------------------------------------------------

    def assistant_spans(self, messages: list[dict]) -> tuple[str, list[Span]]:
        """Render a whole conversation and locate each assistant turn in the text.

        Each span runs from the first character of the assistant content to the
        end of its end-of-turn text, so training sees the marker, the words and
        the stop, and nothing of the headers or the people's turns. Spans come
        from prefixes of the same render, so they are exact character offsets in
        the string the model is trained on.
        """
        full = self.render_messages(messages)
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = self.render_messages(messages[:i], add_generation_prompt=True)
            through = self.render_messages(messages[: i + 1])
            start = len(before) + len(self.lead)
            content = message["content"]
            if not full.startswith(through) or through[start : start + len(content)] != content:
                raise TemplateError(
                    "the chat template does not render conversations prefix by prefix; "
                    "assistant turns cannot be located for the loss mask"
                )
            tail = through[start + len(content) :]
            end = start + len(content) + len(tail.rstrip())
            spans.append(Span(start, end))
        return full, spans

    # -- probing -------------------------------------------------------------------

    def _probe_template(self) -> tuple[str, str]:
        user = [{"role": "user", "content": "x"}]
        with_prompt = self.render_messages(user, add_generation_prompt=True)
        answered = self.render_messages(user + [{"role": "assistant", "content": _PROBE}])
        if _PROBE not in answered or not answered.startswith(with_prompt):
            raise TemplateError("the chat template does not end a prompt where the assistant's turn begins")
        lead = answered[len(with_prompt) : answered.index(_PROBE)]
        end_of_turn = answered[answered.index(_PROBE) + len(_PROBE) :].strip()
        if not end_of_turn:
            raise TemplateError("the chat template has no end-of-turn text after an assistant turn")
        return lead, end_of_turn

    def _probe_headers(self) -> tuple[str, ...]:
        """The text that opens a person's turn (first and after an answer) and the assistant's.

        Only what follows the last end of turn counts (a default system prompt
        may come first).
        """
        user = [{"role": "user", "content": "x"}]
        first = self.render_messages([{"role": "user", "content": _PROBE}])
        later = self.render_messages(user + [{"role": "assistant", "content": "y"},
                                             {"role": "user", "content": _PROBE}])
        after_answer = self.render_messages(user + [{"role": "assistant", "content": "y"}])
        candidates = (
            first[: first.index(_PROBE)],
            later[len(after_answer) : later.index(_PROBE)] if later.startswith(after_answer) else "",
            self.render_messages(user, add_generation_prompt=True)[len(self.render_messages(user)):],
        )
        headers = {header.rsplit(self.end_of_turn, 1)[-1].strip() for header in candidates}
        return tuple(sorted(header for header in headers if header))
