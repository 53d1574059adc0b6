"""``python -m bot chat``: the terminal front end on the Discord bot's core.

Lines are piped through ``main()`` as standard input, the way ``printf ... |
python -m bot chat`` feeds them. Where only the pipeline is under test (rules,
decision queue, settings, input handling) the engine is the scripted fake
(tests/fakes/engine.py), put where ``load_engine`` would load the real one; the
real embedded model with the shipped adapter runs in the last tests, through a
real subprocess.

Previously the chat had its own mention regex, no fixed rules, its own
threshold comparison and its own ``--threshold`` knob that ignored .env; it had
no tests.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import models.turns
from bot.chat import main
from bot.decisions import COULD_NOT_ANSWER
from tests.fakes.engine import ScriptedEngine

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.fixture
def scripted(monkeypatch):
    """The scripted engine main() gets instead of a real model; records how it was loaded."""
    import models.loading

    engine = ScriptedEngine(speak_probability=0.5, reply_text="It's Lima.")
    engine.loads = []

    def load_engine(model, adapter, window_tokens, **_):
        engine.loads.append((model, adapter, window_tokens))
        return engine

    monkeypatch.setattr(models.loading, "load_engine", load_engine)
    return engine


def chat(monkeypatch, capsys, text: str | bytes, *args: str) -> tuple[int, list[str]]:
    """Run ``python -m bot chat ARGS`` in-process with ``text`` piped in; (exit code, stdout lines)."""
    data = text if isinstance(text, bytes) else text.encode()
    # Strict UTF-8, like a real pipe under a UTF-8 locale: bad bytes raise unless the chat says otherwise.
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    code = main(list(args))
    return code, capsys.readouterr().out.splitlines()


def said(lines: list[str]) -> list[str]:
    return [line.removeprefix("assistant: ") for line in lines if line.startswith("assistant: ")]


def test_a_mention_is_a_forced_reply_and_chit_chat_goes_to_the_model(monkeypatch, capsys, scripted):
    code, out = chat(monkeypatch, capsys, "Ana: anyone up for pizza?\nBo: @assistant capital of peru?\n")
    assert code == 0
    assert said(out) == ["It's Lima."]
    [(_, decided)] = scripted.decisions
    assert [(t.name, t.text) for t in decided] == [("Ana", "anyone up for pizza?")]
    [(_, answered)] = scripted.replies
    assert (answered[-1].name, answered[-1].text) == ("Bo", "@assistant capital of peru?")


def test_a_line_aimed_at_someone_here_is_left_to_them_without_a_model_call(monkeypatch, capsys, scripted):
    scripted.speak_probability = 1.0
    code, out = chat(monkeypatch, capsys, "Ana: hi\nBo: @ana are you driving tonight?\n", "--explain")
    assert [[t.text for t in window] for _, window in scripted.decisions] == [["hi"]]
    assert "  [reason=rule:mentions others spoke=no]" in out
    assert said(out) == ["It's Lima."], "only Ana's line, judged by the model, was answered"


def test_chattiness_from_the_environment_chimes_in_on_every_line(monkeypatch, capsys, scripted):
    scripted.speak_probability = 0.0
    monkeypatch.setenv("CHIMEIN_CHATTINESS", "1")
    code, out = chat(monkeypatch, capsys, "Ana: hi\nBo: nice weather\nAna: yes\n", "--explain")
    assert code == 0
    assert said(out) == ["It's Lima."] * 3
    assert sum(line.startswith("  [reason=model spoke=yes p=0.000 threshold=0.00 ") for line in out) == 3
    # The window the model sees holds its own answers, as in Discord.
    assert [t.role for t in scripted.decisions[-1][1]] == ["user", "assistant", "user", "assistant", "user"]


def test_dotenv_is_read_and_flags_override_it_under_the_same_names(monkeypatch, capsys, scripted,
                                                                   clean_environment):
    scripted.speak_probability = 0.0
    (clean_environment / ".env").write_text("CHIMEIN_CHATTINESS=1\nCHIMEIN_MODEL=org/from-dotenv\n")
    assert said(chat(monkeypatch, capsys, "Ana: hi\n")[1]) == ["It's Lima."]
    assert said(chat(monkeypatch, capsys, "Ana: hi\n", "--chattiness", "0")[1]) == []
    assert said(chat(monkeypatch, capsys, "Ana: hi\n", "--threshold", "0.0")[1]) == ["It's Lima."]
    chat(monkeypatch, capsys, "", "--model", "org/from-flag", "--adapter", "none", "--window-tokens", "512")
    assert scripted.loads == [("org/from-dotenv", "auto", 1024)] * 3 + [("org/from-flag", None, 512)]


def test_default_chattiness_is_the_adapters(monkeypatch, capsys, scripted):
    """No chattiness set anywhere: the threshold stored with the loaded adapter decides."""
    monkeypatch.setattr(scripted, "describe", lambda: {"model": "scripted", "speak_threshold": 0.4})
    scripted.speak_probability = 0.45
    code, out = chat(monkeypatch, capsys, "Ana: how many ounces in a pound?\n", "--explain")
    assert any(line.startswith("  [reason=model spoke=yes p=0.450 threshold=0.40 ") for line in out)


def test_bad_settings_are_one_line_and_no_model_is_loaded(monkeypatch, capsys, scripted):
    assert main(["--chattiness", "2"]) == 2
    assert "CHIMEIN_CHATTINESS" in capsys.readouterr().err
    assert scripted.loads == []


def test_undecodable_input_reaches_the_model_replaced_not_as_a_traceback(monkeypatch, capsys, scripted):
    """printf 'Ana: hi \\xff there' | python -m bot chat ended in a UnicodeDecodeError traceback."""
    code, out = chat(monkeypatch, capsys, b"Ana: hi \xff there\nBo: ok\n")
    assert code == 0
    assert [t.text for t in scripted.decisions[-1][1]] == ["hi \ufffd there", "ok"]


@pytest.mark.xfail(not hasattr(models.turns, "MAX_NAME_CHARS"), strict=True,
                   reason="Turn clips names once the models developer's clean_name lands")
def test_long_names_are_clipped_as_discord_clips_display_names(monkeypatch, capsys, scripted):
    long_name = "Bartholomew-the-Magnificent-of-Greater-Lower-Saxony"
    chat(monkeypatch, capsys, f"{long_name}: hello\n".encode())
    [(_, [turn])] = scripted.decisions
    assert len(turn.name) == 32 and long_name.startswith(turn.name)


def test_configured_bot_names_are_mentions_as_in_discord(monkeypatch, capsys, scripted):
    scripted.speak_probability = 0.0
    code, out = chat(monkeypatch, capsys, "Ana: @Sage what's 2+2?\nBo: sage is handy\n", "--bot-names", "Sage")
    assert said(out) == ["It's Lima."]
    assert scripted.replies[0][1][-1].text == "@assistant what's 2+2?"
    assert scripted.decisions[0][1][-1].text == "assistant is handy"


def test_a_failing_model_stays_silent_and_a_mention_gets_the_notice(monkeypatch, capsys, scripted):
    scripted.decide_error = scripted.reply_error = RuntimeError("out of memory")
    code, out = chat(monkeypatch, capsys, "Ana: hi\nBo: @assistant you there?\n")
    assert code == 0 and said(out) == [COULD_NOT_ANSWER]
    assert len(scripted.decisions) == 1 and len(scripted.replies) == 1


def test_slash_commands_work_as_lines(monkeypatch, capsys, scripted):
    """/quiet on keeps it out unless mentioned, as in Discord; /chattiness 1 then speaks on every line;
    /forget starts the window afresh."""
    scripted.speak_probability = 0.2
    text = ("/quiet on\nAna: how many ounces in a pound?\nBo: @assistant you there?\n/quiet off\n"
            "/chattiness 1\nAna: hi\n/chattiness 7\n/forget\nBo: so anyway\n/status\n")
    code, out = chat(monkeypatch, capsys, text.encode())
    assert said(out) == ["It's Lima."] * 3, "the mention, then both lines at chattiness 1 (7 is refused)"
    assert [[t.text for t in window] for _, window in scripted.decisions] == [
        ["how many ounces in a pound?", "@assistant you there?", "It's Lima.", "hi"], ["so anyway"]]
    assert scripted.forgotten == [0]


# -- the real model ----------------------------------------------------------------------------


def run_chat(cwd: Path, stdin: bytes, *args: str, **variables: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("CHIMEIN_") and key != "DISCORD_TOKEN"}
    env.update(PYTHONPATH=str(REPO), **variables)
    if "CHIMEIN_CACHE" in os.environ:
        env["CHIMEIN_CACHE"] = os.environ["CHIMEIN_CACHE"]
    return subprocess.run([sys.executable, "-m", "bot", "chat", *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, timeout=300)


@pytest.mark.slow
def test_real_model_chimes_in_on_every_line_at_chattiness_1_from_dotenv(clean_environment):
    (clean_environment / ".env").write_text("CHIMEIN_CHATTINESS=1\n")
    done = run_chat(clean_environment, b"Ana: hi \xff there\nBo: how was the trip?\n", "--explain")
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0 and "Traceback" not in err, err
    assert "adapter: " in err and "models/adapter" in err, "the shipped adapter, as the bot loads it"
    decisions = [line for line in out.splitlines() if line.startswith("  [reason=model")]
    assert len(decisions) == 2 and all("spoke=yes" in line and "threshold=0.00" in line for line in decisions)
    assert len(said(out.splitlines())) == 2


@pytest.mark.slow
def test_a_model_without_a_chat_template_is_a_clear_loading_error(clean_environment):
    """Previously a TemplateError traceback from python -m bot, bot chat and training.evaluate."""
    from models.loading import embedded_model_dir

    source, bare = embedded_model_dir(), clean_environment / "no-template"
    bare.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (bare / name).symlink_to(source / name)
    config = json.loads((source / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    assert not (bare / "chat_template.jinja").exists()
    done = run_chat(clean_environment, b"Ana: hi\n", "--model", str(bare), "--adapter", "none")
    err = done.stderr.decode()
    assert done.returncode == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"error: cannot use model '{bare}': ")
    assert "chat template" in err
    shutil.rmtree(bare)
