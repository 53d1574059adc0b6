"""Entry point.

    python -m bot          run the Discord bot (configured from the environment / .env)
    python -m bot chat     a local group chat in the terminal, no Discord account needed
    python -m bot check    validate the configuration and model files without connecting
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and not argv[0].startswith("-") else "run"
    rest = argv[1:] if command != "run" else argv
    if command == "chat":
        from bot.chat import main as run
    elif command == "check":
        from bot.check import main as run
    elif command == "run":
        from bot.discord_app import main as run
    else:
        print(f"unknown command {command!r}; use: python -m bot [chat|check]", file=sys.stderr)
        return 2
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
