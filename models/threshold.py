"""The decision rule, in one place: when a speak probability means "chime in".

The model gives a speak probability ``p`` after every message. The assistant
speaks on its own when ``p`` reaches the threshold (``should_speak``). People
set the same knob as *chattiness* (``/chattiness``, ``CHIMEIN_CHATTINESS``):
chattiness = 1 - threshold, so 0 never chimes in and 1 chimes in whenever it
can. Everything that decides (the Discord bot, the terminal chat, the
evaluation) compares through ``should_speak`` and nothing else.

The threshold belongs to the adapter it was tuned on: training reads it off the
dev set and stores it beside the adapter (``ADAPTER_FILE``); loading reads it
back (``adapter_threshold``), and ``SPEAK_THRESHOLD`` is the fallback for an
adapter that carries none (or no adapter at all).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# The speak probability from which the assistant chimes in on its own when the
# adapter does not say otherwise. Quieter than 0.5, as silence is the normal case;
# read off the first shipped adapter's dev threshold curve.
SPEAK_THRESHOLD = 0.65
ADAPTER_FILE = "chimein.json"  # beside adapter_config.json: {"speak_threshold": 0.65, ...}


def should_speak(probability: float, threshold: float) -> bool:
    """The one comparison: speak when the probability reaches the threshold."""
    return probability >= threshold


def chattiness_to_threshold(chattiness: float) -> float:
    """Chattiness 0..1 (people's knob) -> speak threshold 0..1 (the model's)."""
    return round(1.0 - _unit(chattiness, "chattiness"), 6)


def threshold_to_chattiness(threshold: float) -> float:
    """Speak threshold 0..1 -> chattiness 0..1."""
    return round(1.0 - _unit(threshold, "threshold"), 6)


def adapter_threshold(adapter_dir: str | Path | None) -> float:
    """The threshold stored with an adapter, or ``SPEAK_THRESHOLD`` when it stores none."""
    if adapter_dir is None:
        return SPEAK_THRESHOLD
    path = Path(adapter_dir) / ADAPTER_FILE
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("speak_threshold")
    except (OSError, ValueError, AttributeError):
        return SPEAK_THRESHOLD
    try:
        return _unit(float(value), "threshold")
    except (TypeError, ValueError):
        return SPEAK_THRESHOLD


def write_adapter_threshold(adapter_dir: str | Path, threshold: float, **extra) -> Path:
    """Store the threshold (and any extra facts, e.g. the dev scores it was read from) beside an adapter."""
    path = Path(adapter_dir) / ADAPTER_FILE
    data = {}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            data = {}
    data.update(extra, speak_threshold=_unit(threshold, "threshold"))
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _unit(value: float, what: str) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{what} must be between 0 and 1, got {value!r}")
    return float(value)
