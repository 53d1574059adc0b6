"""Per-channel controls set with slash commands, kept in one small JSON file.

What is stored per channel: its chattiness (when it differs from the default),
quiet mode, and the moment of the last ``/forget`` (a Discord snowflake, so the
history read after a restart starts after it). No message text is ever stored.
The file is rewritten whole on every change (``bot.files.replace_file``), so a
crash mid-write leaves the old file intact; memory changes only once the file
is written, so a failed write leaves both as they were.

A thread without its own entry follows its parent channel.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bot.files import replace_file

FILE_NAME = "channels.json"


class ChannelSettingsError(Exception):
    """The settings file cannot be read or written; the message names the file and the reason."""


@dataclass(frozen=True)
class ChannelControls:
    chattiness: float | None = None  # None: the default from the bot's settings
    quiet: bool = False  # only speak when mentioned or replied to
    forgotten_before: int | None = None  # snowflake of the last /forget; older history is not read

    def chattiness_or(self, default: float) -> float:
        return default if self.chattiness is None else self.chattiness


class ChannelSettingsStore:
    """Channel id -> ChannelControls, loaded at start and saved atomically on each change.

    Bounded by the number of channels someone ran a command in.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self._controls: dict[int, ChannelControls] = self._load()

    def get(self, channel_id: int, parent_id: int | None = None) -> ChannelControls:
        """The channel's controls; a thread without its own falls back to its parent's."""
        found = self._controls.get(channel_id)
        if found is None and parent_id is not None:
            found = self._controls.get(parent_id)
        return found or ChannelControls()

    def update(self, channel_id: int, **changes) -> ChannelControls:
        """Change some fields of one channel's controls: the file first, then memory.

        Raises ``ChannelSettingsError`` when the file cannot be written; nothing changed then.
        """
        controls = replace(self._controls.get(channel_id, ChannelControls()), **changes)
        updated = {**self._controls, channel_id: controls}
        self._save(updated)
        self._controls = updated
        return controls

    def _load(self) -> dict[int, ChannelControls]:
        if not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {int(channel_id): ChannelControls(**fields) for channel_id, fields in raw.items()}
        except (OSError, ValueError, TypeError, AttributeError) as error:
            # Starting with defaults would silently undo quiet mode where people asked for it.
            raise ChannelSettingsError(f"{self.path}: cannot read channel settings ({error}); "
                                       "fix or delete the file") from error

    def _save(self, controls: dict[int, ChannelControls]) -> None:
        data = {str(channel_id): asdict(c) for channel_id, c in sorted(controls.items())}
        try:
            replace_file(self.path, json.dumps(data, indent=2), durable=True)
        except OSError as error:
            raise ChannelSettingsError(f"{self.path}: cannot save channel settings ({error})") from error
