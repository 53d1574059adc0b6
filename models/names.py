"""The bot's name as the model knows it.

The model is trained on one name, ``assistant``. A deployment runs under its own
Discord name ("Sage", say), so before rendering, the bot rewrites its configured
names and aliases, as whole words in any case, to ``assistant``. Evaluation
applies the same rewrite (``--bot-name``) so transcripts are scored the way the
bot would see them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from models.turns import BOT_NAME


@lru_cache(maxsize=64)
def _names_pattern(names: tuple[str, ...]) -> re.Pattern[str] | None:
    words = sorted({n.strip() for n in names if n.strip()}, key=len, reverse=True)
    if not words:
        return None
    # Whole words only: "Sage" matches "sage," and "@Sage" but not "sausage" or "sages".
    alternatives = "|".join(re.escape(w) for w in words)
    return re.compile(rf"(?<![\w]){'(?:' + alternatives + ')'}(?![\w])", re.IGNORECASE)


def rewrite_bot_names(text: str, names: Iterable[str]) -> str:
    """Replace each of the bot's names in ``text`` with ``assistant``."""
    pattern = _names_pattern(tuple(names))
    return text if pattern is None else pattern.sub(BOT_NAME, text)


def parse_names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"Sage,sagebot"`` or a list -> a tuple of non-empty names."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(n.strip() for n in items if n.strip())
