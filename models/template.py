"""Rendering a window through the tokenizer's own chat template.

``ChatFormat`` wraps one tokenizer and knows three things about its template,
all derived by rendering rather than hard-coded, so ChatML, Zephyr, Llama-2-chat
and OpenChat templates work alike:

* the *lead*: what the template puts between the generation prompt and the
  assistant's content (``""`` for ChatML, ``" "`` for Llama-2);
* the *end of turn*: the text that closes an assistant turn (``<|im_end|>``,
  ``</s>``, ``<|end_of_turn|>``), which generation stops at and training learns;
* the *control strings*: the tokenizer's added tokens, the markers and the
  common role headers, which text typed by a person must not be able to forge.
"""

from __future__ import annotations

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
        added = [t.content for t in tokenizer.added_tokens_decoder.values()]
        controls = {s for s in (*added, *MARKERS, *LITERAL_ROLE_HEADERS, self.end_of_turn) if s.strip()}
        # Longest first, so "<|im_start|>" is broken before a shorter token inside it.
        self.control_strings = tuple(sorted(controls, key=len, reverse=True))

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
        return user_line(self.neutralise(name), self.neutralise(self._clip(text)))

    def neutralise(self, text: str) -> str:
        """Break every control string in text typed by a person.

        A space after the first character keeps the text readable ("< |im_start|>",
        "( response)") while the tokenizer no longer sees a control token, a role
        header or a marker.
        """
        for control in self.control_strings:
            if control in text:
                text = text.replace(control, control[0] + " " + control[1:])
        return text

    def _clip(self, text: str) -> str:
        # One huge message must not push the whole room out of the window.
        if self.max_turn_tokens is None:
            return text
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.max_turn_tokens:
            return text
        return self.tokenizer.decode(ids[: self.max_turn_tokens]) + " …"

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
