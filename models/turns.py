"""The model's text format, defined once: who said what, and the two markers.

Each person's message is one user turn ``Name: text``; each assistant turn is
exactly ``(silence)`` or ``(response) text``. There is no system prompt in the
finetuned format. Everything else in the project imports these names instead of
spelling the strings again.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

# Re-exported for code not yet moved to models.threshold, its one home (training/evaluate.py).
from models.threshold import SPEAK_THRESHOLD  # noqa: F401

SILENCE = "(silence)"
RESPONSE = "(response)"
MARKERS = (SILENCE, RESPONSE)
BOT_NAME = "assistant"

# The token budget of the conversation the model sees for one decision, by default.
WINDOW_TOKENS = 1024

Role = Literal["user", "assistant"]
# Discord's limit on a display name. Names from the terminal and data files are
# clipped to it as well: a name is rendered in every one of its person's turns.
MAX_NAME_CHARS = 32


def clean_text(text: str) -> str:
    """Text as it enters (Discord, the terminal, a data file) -> text every tokenizer can take.

    A lone surrogate (``\\ud800``, or the ``\\udcff`` Python makes of an undecodable
    byte read from a terminal) makes the tokenizer raise, and once such a message
    is in a channel's window every later decision there would fail: each becomes
    U+FFFD. A surrogate pair written as two code points is joined into its
    character. NUL is removed (the template probes use it, and nothing typed
    needs it). Anything that is not a string is an error of the caller.
    """
    if not isinstance(text, str):
        raise TypeError(f"turn text must be a string, not {type(text).__name__}")
    if text.isascii():
        return text.replace("\x00", "")
    # UTF-16 with surrogatepass pairs up surrogate halves; what stays alone is replaced.
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text.replace("\x00", "")


def clean_name(name: str) -> str:
    """A display name, cleaned as text and clipped to Discord's 32 characters."""
    return clean_text(name)[:MAX_NAME_CHARS]


@dataclass(frozen=True)
class Turn:
    """One message in a channel's window.

    A user turn carries the author's display name; an assistant turn carries the
    text the bot said (never a marker). A user turn with no assistant turn after
    it was a silence. ``turn_id`` (a Discord message id, a line number) lets the
    engine keep the start of its window stable while the window slides.
    """

    role: Role
    text: str
    name: str = ""
    turn_id: Hashable | None = None

    def __post_init__(self):
        # Every turn is made here, whatever its source, so nothing downstream meets
        # text the tokenizer cannot take or a name longer than Discord allows.
        object.__setattr__(self, "text", clean_text(self.text))
        object.__setattr__(self, "name", clean_name(self.name))

    @classmethod
    def user(cls, name: str, text: str, turn_id: Hashable | None = None) -> Turn:
        return cls("user", text, name, turn_id)

    @classmethod
    def assistant(cls, text: str, turn_id: Hashable | None = None) -> Turn:
        return cls("assistant", text, BOT_NAME, turn_id)


def user_line(name: str, text: str) -> str:
    """The content of a user turn: ``Name: text``."""
    return f"{name}: {text}"


def assistant_line(text: str | None) -> str:
    """The content of an assistant turn: the silence marker, or the response marker and text."""
    return SILENCE if text is None else f"{RESPONSE} {text}"


def to_chat_messages(turns: Sequence[Turn], user_text=lambda name, text: user_line(name, text)) -> list[dict]:
    """Turns -> chat-template messages in the finetuned layout.

    Every user turn is followed by exactly one assistant turn: the bot's words
    when it spoke, ``(silence)`` when it did not. A trailing user turn is left
    open (that is the decision point). Consecutive bot messages (a long reply
    split for Discord) merge into one turn; a window that starts with the bot's
    words drops them, since they answer something no longer in view.
    ``user_text`` renders a user turn's content (the engine passes one that also
    neutralises control text).
    """
    messages: list[dict] = []
    for turn in turns:
        if turn.role == "user":
            if messages and messages[-1]["role"] == "user":
                messages.append({"role": "assistant", "content": SILENCE})
            messages.append({"role": "user", "content": user_text(turn.name, turn.text)})
        elif messages:
            if messages[-1]["role"] == "assistant":
                if messages[-1]["content"] == SILENCE:
                    messages[-1]["content"] = assistant_line(turn.text)
                else:
                    messages[-1]["content"] += "\n" + turn.text
            else:
                messages.append({"role": "assistant", "content": assistant_line(turn.text)})
    return messages


def from_records(conversation: Iterable[dict]) -> list[Turn]:
    """A conversation in the data format (see data/README.md) -> turns."""
    return [
        Turn.user(m["name"], m["content"]) if m["role"] == "user" else Turn.assistant(m["content"])
        for m in conversation
    ]


def strip_markers(text: str) -> str:
    """Remove every marker from model output, so none ever reaches people."""
    for marker in MARKERS:
        text = text.replace(marker, "")
    return text.strip()
