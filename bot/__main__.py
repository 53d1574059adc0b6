"""Entry point: python -m bot [run|chat|check] [options].

    python -m bot          run the Discord bot (the same as: python -m bot run)
    python -m bot chat     a local group chat in the terminal, no Discord account needed
    python -m bot check    validate the configuration and model files without connecting

All three read the same settings (environment variables and .env, see .env.example);
python -m bot COMMAND --help lists each command's options.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

# command -> (module whose main(argv) runs it, one line for --help)
COMMANDS = {
    "run": ("bot.discord_app", "run the Discord bot (the default; needs DISCORD_TOKEN)"),
    "chat": ("bot.chat", "a local group chat in the terminal, on the same rules and decisions as Discord"),
    "check": ("bot.check", "validate the configuration and model files without connecting"),
}


def chimein_version() -> str:
    try:
        return version("chimein")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Chime In: a quiet group-chat assistant that knows when to talk. "
                    "Settings come from the environment and .env (see .env.example); "
                    "a command's flags override them under the same names.",
        epilog="python -m bot COMMAND --help shows a command's options.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {chimein_version()}")
    commands = parser.add_subparsers(dest="command", title="commands", metavar="{run,chat,check}")
    for name, (_, help_text) in COMMANDS.items():
        # Each command parses its own options (python -m bot chat --help).
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        command, rest = argv[0], argv[1:]
    elif not argv:
        command, rest = "run", []
    else:
        build_parser().parse_args(argv)  # --help, --version, or an unknown command: prints and exits
        command, rest = "run", argv
    return import_module(COMMANDS[command][0]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
