"""A local group chat in the terminal: try the assistant with no Discord account and no GPU.

    make chat                       (or: python -m bot chat [--explain])
    printf 'Ana: hi\nBo: @assistant what is 2+2?\n' | python -m bot chat
    CHIMEIN_CHATTINESS=1 python -m bot chat       (chimes in on every line)

Several people type lines as "Name: text" (a line without a name continues as
the last speaker). It runs on the same core as the Discord bot: each line goes
into the same kind of window, through the same fixed rules (bot.rules: an
@assistant mention forces a reply, a line that @mentions someone else who
spoke here is left to them) and the same decision queue (bot.decisions), with
the same settings (environment and .env; the flags below override them). The
slash commands work as lines too: /chattiness LEVEL, /quiet on|off, /forget,
/status (for this chat only). Each line is judged before the next is read.
--explain prints the decision line the Discord bot logs for every line. With
no terminal attached, lines are read from standard input until it ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from bot.decisions import DecisionQueue
from bot.rules import MessageFacts, rule_for
from bot.settings import Settings, SettingsError, add_setting_flags, load_settings, setting_overrides
from bot.window import WindowStore
from bot.worker import ModelWorker
from models.names import rewrite_bot_names
from models.threshold import chattiness_to_threshold, threshold_to_chattiness
from models.turns import BOT_NAME, Turn, strip_markers

CHAT_SETTINGS = ("model", "adapter", "window_tokens", "chattiness", "bot_names", "knowledge_dir",
                 "engine_url", "engine_model", "reply_url", "reply_model")
NAMED_LINE = re.compile(r"^\s*([^:\s][^:]{0,63}):\s*(.*)$")
MENTION = re.compile(r"(?<![\w@])@([\w.-]+)")
DEFAULT_SPEAKER = "you"
# The Discord bot's slash commands, typed as lines in the terminal.
COMMANDS = ("/chattiness", "/quiet", "/forget", "/status")
COMMANDS_HELP = "/chattiness LEVEL, /quiet on|off, /forget, /status"

log = logging.getLogger(__name__)


def parse_line(line: str, last_name: str) -> tuple[str, str]:
    """``"Ana: hi"`` -> ("Ana", "hi"); a line with no name keeps the last speaker."""
    match = NAMED_LINE.match(line)
    if match and match.group(2).strip():
        return match.group(1).strip(), match.group(2).strip()
    return last_name, line.strip()


@dataclass(frozen=True)
class Line:
    """One line typed into the terminal, as the decision queue sees a message."""

    id: int
    turn: Turn


class TerminalRoom:
    """The terminal as the decision queue's room: the assistant's words go to standard output."""

    id = 0
    name = "terminal"
    places = ()  # the shared notes only: the terminal is no server or channel
    errors = (OSError,)  # a closed pipe: logged, and the chat goes on reading

    def __init__(self, out=None) -> None:
        self.out = out or sys.stdout
        self._last_id = 0

    def next_id(self) -> int:
        """Ids order the window: lines and the assistant's posts share one counter."""
        self._last_id += 1
        return self._last_id

    def typing(self) -> contextlib.AbstractAsyncContextManager:
        return contextlib.nullcontext()

    async def post(self, text: str, reply_to: Line | None = None) -> list[Turn]:
        text = strip_markers(text)
        if not text:
            return []
        print(f"{BOT_NAME}: {text}", file=self.out, flush=True)
        return [Turn.assistant(text, self.next_id())]


class TerminalChat:
    """Lines in, the same rules and decision queue as Discord, the assistant's words out."""

    def __init__(self, engine, settings: Settings, out=None, notes=None) -> None:
        self.settings = settings
        self.room = TerminalRoom(out)
        self.worker = ModelWorker(engine)
        self.windows = WindowStore()
        self.window = self.windows.reset(self.room.id)
        self.info = engine.describe()
        self.chattiness = settings.default_chattiness(self.info)
        self.quiet = False
        self.decisions = DecisionQueue(self.worker, self.windows, lambda room: self.chattiness, notes=notes)
        self.speakers: set[str] = set()

    def facts(self, turn: Turn) -> MessageFacts:
        """What the rules need: @assistant is a mention of the bot; @Name of someone who spoke here
        is a mention of them (in Discord both are real mentions)."""
        mentioned = {name.lower() for name in MENTION.findall(turn.text)}
        return MessageFacts(mentions_bot=BOT_NAME in mentioned, quiet=self.quiet,
                            mentions_others=bool(mentioned & (self.speakers - {turn.name.lower()})))

    async def say(self, name: str, text: str) -> None:
        """One person's line: into the window, through the rules, and judged before this returns."""
        # The bot's configured names are rewritten to the one the model knows, as in Discord.
        turn = Turn.user(name, rewrite_bot_names(text, self.settings.bot_names), self.room.next_id())
        self.window.add(turn)
        self.speakers.add(turn.name.lower())
        self.decisions.route(self.room, Line(turn.turn_id, turn), rule_for(self.facts(turn)))
        await self.decisions.idle()

    async def command(self, line: str) -> str:
        """The Discord bot's slash commands, typed as a line; the answer (shown only to the typist)."""
        command, _, value = line.strip().partition(" ")
        value = value.strip().lower()
        if command == "/chattiness":
            try:
                level = float(value)
                chattiness_to_threshold(level)  # refuses a level outside 0..1
            except ValueError:
                return "usage: /chattiness LEVEL (0 = only when asked, 1 = on every message)"
            self.chattiness = level
            return f"Chattiness here is now {self.chattiness:.2f}."
        if command == "/quiet" and value in ("on", "off"):
            self.quiet = value == "on"
            return f"Quiet mode {value}."
        if command == "/forget":
            self.window = self.windows.reset(self.room.id)
            self.speakers.clear()
            await self.worker.forget(self.room.id)
            return "Forgotten: I no longer remember the conversation before this point."
        if command == "/status":
            return (f"Model: {self.info.get('model')}; adapter: {self.info.get('adapter') or 'none'}; "
                    f"chattiness {self.chattiness:.2f}; quiet mode {'on' if self.quiet else 'off'}; "
                    f"messages in memory: {len(self.window)}")
        return f"commands: {COMMANDS_HELP}"

    async def run(self, lines: Iterator[str], notices=None) -> None:
        name = DEFAULT_SPEAKER
        try:
            for raw in lines:
                if raw.split(" ", 1)[0].strip() in COMMANDS:
                    print(await self.command(raw), file=notices or sys.stderr, flush=True)
                elif raw.strip():
                    name, text = parse_line(raw, name)
                    await self.say(name, text)
        finally:
            self.decisions.cancel()
            self.worker.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot chat", description=__doc__.split("\n\n")[0],
        epilog="The options default to the settings the Discord bot reads (environment variables "
               "and .env, see .env.example); a flag overrides its setting.")
    add_setting_flags(parser, CHAT_SETTINGS)
    parser.add_argument("--threshold", type=float, metavar="P", default=argparse.SUPPRESS,
                        help="the same knob as the model sees it: speak when the probability reaches P "
                             "(an alias for --chattiness 1-P)")
    parser.add_argument("--explain", action="store_true",
                        help="print the decision line (rule or speak probability, latency) of every line")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = setting_overrides(args)
    try:
        if "threshold" in args:
            overrides.setdefault("chattiness", threshold_to_chattiness(args.threshold))
        settings = load_settings(**overrides)
        notes = settings.load_notes()
    except (SettingsError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    from bot.engines import build_engine
    from models.library_logs import quiet_libraries
    from models.loading import ModelLoadError

    quiet_libraries()
    try:
        engine = build_engine(settings)
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    chat = TerminalChat(engine, settings, notes=notes)
    _describe(engine.describe(), chat.chattiness)
    if notes is not None:
        print(f"notes: {notes.report().summary()}", file=sys.stderr)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Type lines as 'Name: text'. @assistant forces a reply. {COMMANDS_HELP}. Ctrl-D to quit.",
              file=sys.stderr)
    with _decision_lines(args.explain):
        try:
            asyncio.run(chat.run(_lines(interactive)))
        except KeyboardInterrupt:
            print(file=sys.stderr)
    return 0


def _describe(info: dict, chattiness: float) -> None:
    adapter = info.get("adapter") or "none: running on the bare base model, which has not learned when to speak"
    print(f"model: {info.get('model')} ({info.get('device')}, {info.get('dtype')}); adapter: {adapter}; "
          f"chattiness {chattiness:.2f} (speaks on its own from p >= {chattiness_to_threshold(chattiness):.2f})"
          + (f"; decisions: {info['backend']}" if info.get("backend") else "")
          + (f"; replies: {info['reply_backend']}" if info.get("reply_backend") else ""),
          file=sys.stderr)


class _ExplainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage().replace(f"decision channel=#{TerminalRoom.name}({TerminalRoom.id}) ", "")
        return f"  [{text}]" if record.levelno < logging.WARNING else f"{record.levelname}: {text}"


@contextlib.contextmanager
def _decision_lines(explain: bool):
    """With --explain, the bot's decision log lines (bot.decisions) on standard output; warnings always."""
    handler = logging.StreamHandler(sys.stdout if explain else sys.stderr)
    handler.setFormatter(_ExplainFormatter())
    handler.setLevel(logging.INFO if explain else logging.WARNING)
    logger = logging.getLogger("bot")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _lines(interactive: bool) -> Iterator[str]:
    # Undecodable bytes (a Latin-1 paste into a UTF-8 terminal) become U+FFFD, not a traceback.
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="replace")
    if not interactive:
        yield from sys.stdin
        return
    while True:
        try:
            yield input("> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return


if __name__ == "__main__":
    sys.exit(main())
