"""``python -m bot``: one entry point whose help lists its commands in plain text,
with a version, and ``run`` as the default command."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from bot.__main__ import COMMANDS, main

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_every_command_in_plain_text():
    done = subprocess.run([sys.executable, "-m", "bot", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ("run", "chat", "check"):
        assert f"    {command} " in done.stdout, f"{command} is listed with its help line"
    assert "--version" in done.stdout
    assert "``" not in done.stdout, "no reStructuredText markup in --help"


def test_version_comes_from_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"python -m bot {version('chimein')}"


@pytest.mark.parametrize("argv, command, rest", [
    ([], "run", []),
    (["run", "--help"], "run", ["--help"]),
    (["chat", "--chattiness", "1"], "chat", ["--chattiness", "1"]),
    (["check", "--connected"], "check", ["--connected"]),
])
def test_each_command_gets_its_own_arguments(monkeypatch, argv, command, rest):
    import importlib

    called = []
    module = importlib.import_module(COMMANDS[command][0])
    monkeypatch.setattr(module, "main", lambda args: called.append(args) or 0)
    assert main(argv) == 0
    assert called == [rest]


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["chta"])
    assert exit_.value.code == 2
    assert "invalid choice: 'chta'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "chat", "check"])
def test_no_command_help_prints_raw_markup(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m bot {command}") and "``" not in out
