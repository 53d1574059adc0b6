"""A local group chat in the terminal: try the assistant with no Discord account and no GPU.

    make chat                       (or: python -m bot chat [--explain])
    printf 'Ana: hi\\nBo: @assistant what is 2+2?\\n' | python -m bot chat

Several people type lines as ``Name: text`` (a line without a name continues as
the last speaker). ``@assistant`` in a line forces a reply; otherwise the model
decides whether to chime in. ``--explain`` shows the speak probability of every
line. With no terminal attached, lines are read from standard input until it ends.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import deque

from bot.settings import SettingsError, add_setting_flags, load_settings, setting_overrides
from models.threshold import chattiness_to_threshold, should_speak, threshold_to_chattiness
from models.turns import BOT_NAME, Turn

MAX_WINDOW_TURNS = 200  # older turns leave the deque; the engine trims by tokens anyway
MENTION = re.compile(rf"@{BOT_NAME}\b", re.IGNORECASE)
NAMED_LINE = re.compile(r"^\s*([^:\s][^:]{0,31}):\s*(.*)$")


def parse_line(line: str, last_name: str) -> tuple[str, str]:
    """``"Ana: hi"`` -> ("Ana", "hi"); a line with no name keeps the last speaker."""
    match = NAMED_LINE.match(line)
    if match and match.group(2):
        return match.group(1).strip(), match.group(2).strip()
    return last_name, line.strip()


CHAT_SETTINGS = ("model", "adapter", "window_tokens", "chattiness", "bot_names")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot chat", description=__doc__.split("\n\n")[0],
        epilog="The options default to the same settings the Discord bot reads (environment "
               "variables and .env, see .env.example); a flag overrides its setting.")
    add_setting_flags(parser, CHAT_SETTINGS)
    parser.add_argument("--threshold", type=float, metavar="P", default=argparse.SUPPRESS,
                        help="the same knob as the model sees it: speak when the probability reaches P "
                             "(an alias for --chattiness 1-P)")
    parser.add_argument("--explain", action="store_true", help="show the speak probability of every line")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = setting_overrides(args)
    if "threshold" in args:
        overrides.setdefault("chattiness", threshold_to_chattiness(args.threshold))
    try:
        settings = load_settings(**overrides)
    except (SettingsError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    from models.loading import ModelLoadError, load_engine
    from models.quiet import quiet_libraries

    quiet_libraries()
    interactive = sys.stdin.isatty()
    try:
        engine = load_engine(settings.model, settings.adapter_arg, window_tokens=settings.window_tokens)
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    info = engine.describe()
    adapter = info["adapter"] or "none: running on the bare base model, which has not learned when to speak"
    print(f"model: {info['model']} ({info['device']}, {info['dtype']}); adapter: {adapter}", file=sys.stderr)
    if interactive:
        print("Type lines as 'Name: text'. @assistant forces a reply. Ctrl-D to quit.", file=sys.stderr)

    threshold = chattiness_to_threshold(settings.default_chattiness(info))
    window: deque[Turn] = deque(maxlen=MAX_WINDOW_TURNS)
    name = "you"
    for count, raw in enumerate(_lines(interactive)):
        if not raw.strip():
            continue
        name, text = parse_line(raw, name)
        window.append(Turn.user(name, text, turn_id=count))
        forced = bool(MENTION.search(text))
        started = time.perf_counter()
        probability = None if forced else engine.decide(list(window), key="terminal")
        speaks = forced or should_speak(probability, threshold)
        if args.explain:
            why = "forced by @assistant" if forced else f"p(speak)={probability:.2f}"
            took = (time.perf_counter() - started) * 1000
            print(f"  [{why}, {'speak' if speaks else 'silent'}, {took:.0f} ms]", flush=True)
        if speaks:
            reply = engine.reply(list(window), key="terminal")
            if reply:
                window.append(Turn.assistant(reply, turn_id=f"a{count}"))
                print(f"{BOT_NAME}: {reply}", flush=True)
            elif forced:
                print(f"{BOT_NAME}: (could not come up with an answer)", flush=True)
    return 0


def _lines(interactive: bool):
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
