"""Knowledge notes in the bot's one pipeline: ``bot chat`` and the Discord bot get the same retrieval.

The engine is the scripted fake, extended to record the notes it is given; the
notes folder is real (a temporary one), so retrieval is bm25s's.
"""

from __future__ import annotations

import io
import sys
from types import SimpleNamespace

import pytest

from bot.chat import main
from bot.discord_room import DiscordRoom
from tests.fakes.engine import ScriptedEngine

pytestmark = pytest.mark.usefixtures("clean_environment")


class NotedEngine(ScriptedEngine):
    """The scripted engine, recording the notes each call got (None: called without notes)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.notes_seen: list[tuple[str, list[str] | None]] = []

    def decide(self, window, key="default", notes=None):
        self.notes_seen.append(("decide", notes))
        return super().decide(window, key)

    def reply(self, window, key="default", notes=None):
        self.notes_seen.append(("reply", notes))
        return super().reply(window, key)


@pytest.fixture
def noted(monkeypatch):
    import models.loading

    engine = NotedEngine(speak_probability=0.1, reply_text="glaze&fire2024")
    monkeypatch.setattr(models.loading, "load_engine", lambda model, adapter, window_tokens, **_: engine)
    return engine


@pytest.fixture
def knowledge(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "studio.md").write_text(
        "# Studio\n\nWifi: the network is ClayHouse-Guest, password glaze&fire2024.\n\n"
        "Kiln: bisque firings run Tuesday and Friday nights.\n", encoding="utf-8")
    return folder


def chat(monkeypatch, capsys, text, *args):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8"))
    code = main(list(args))
    return code, capsys.readouterr()


def test_chat_gives_the_model_the_passages_and_the_log_line_names_them(monkeypatch, capsys, noted, knowledge):
    monkeypatch.setenv("CHIMEIN_KNOWLEDGE_DIR", str(knowledge))
    code, out = chat(monkeypatch, capsys, "Ana: lovely day\nBo: @assistant what's the wifi password?\n",
                     "--explain")
    assert code == 0
    assert noted.notes_seen[0] == ("decide", None)  # "lovely day" matches no note
    kind, notes = noted.notes_seen[1]
    assert kind == "reply" and "glaze&fire2024" in notes[0]
    assert "notes=studio.md#1" in out.out
    assert "2 passages" in out.err


def test_the_flag_sets_the_same_setting(monkeypatch, capsys, noted, knowledge):
    code, _ = chat(monkeypatch, capsys, "Bo: @assistant wifi password?\n", "--knowledge-dir", str(knowledge))
    assert code == 0 and "glaze&fire2024" in noted.notes_seen[-1][1][0]


def test_without_the_folder_no_notes_reach_the_engine(monkeypatch, capsys, noted):
    code, _ = chat(monkeypatch, capsys, "Bo: @assistant what's the wifi password?\n")
    assert code == 0 and noted.notes_seen == [("reply", None)]


def test_a_missing_folder_stops_the_chat_with_its_name(monkeypatch, capsys, noted, tmp_path):
    monkeypatch.setenv("CHIMEIN_KNOWLEDGE_DIR", str(tmp_path / "nowhere"))
    code, out = chat(monkeypatch, capsys, "Ana: hi\n")
    assert code == 2 and "nowhere: not a folder" in out.err


def test_a_discord_room_searches_its_server_its_channel_and_a_threads_parent():
    thread = SimpleNamespace(id=30, guild=SimpleNamespace(id=10), parent_id=20)
    assert DiscordRoom(thread).places == (10, 30, 20)
    dm = SimpleNamespace(id=40)
    assert DiscordRoom(dm).places == (40,)


def test_bot_check_counts_the_notes_and_names_an_unreadable_file(knowledge):
    from bot.check import OK, PROBLEM, WARNING, check_notes

    (knowledge / "broken.md").write_bytes(b"\xff\xfe not text")
    indexed, unreadable = check_notes(knowledge)
    assert indexed.status == OK and "1 files, 2 passages indexed" in indexed.text
    assert unreadable.status == WARNING and "could not read broken.md (not UTF-8 text)" in unreadable.text
    [missing] = check_notes(knowledge / "nope")
    assert missing.status == PROBLEM and "not a folder" in missing.text
    [unset] = check_notes(None)
    assert unset.status == OK
