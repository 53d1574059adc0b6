"""The per-channel settings file: survives a restart, is written atomically, and a
broken file stops the bot with its path rather than silently undoing quiet mode."""

from __future__ import annotations

import json

import pytest

from bot import files
from bot.channel_settings import FILE_NAME, ChannelControls, ChannelSettingsError, ChannelSettingsStore


def test_changes_survive_a_new_store(tmp_path):
    store = ChannelSettingsStore(tmp_path / "state")
    store.update(1, quiet=True)
    store.update(2, chattiness=0.8)
    store.update(1, forgotten_before=12345)

    again = ChannelSettingsStore(tmp_path / "state")
    assert again.get(1) == ChannelControls(chattiness=None, quiet=True, forgotten_before=12345)
    assert again.get(2).chattiness_or(0.5) == 0.8
    assert again.get(3) == ChannelControls()
    assert again.get(3).chattiness_or(0.5) == 0.5


def test_threads_follow_their_channel_unless_set_themselves(tmp_path):
    store = ChannelSettingsStore(tmp_path)
    store.update(10, quiet=True)
    assert store.get(99, parent_id=10).quiet is True
    store.update(99, quiet=False)
    assert store.get(99, parent_id=10).quiet is False


def test_a_crash_while_writing_leaves_the_old_file_and_memory_as_it_was(tmp_path, monkeypatch):
    """A write that dies halfway (disk full, kill -9) keeps the old file, and the store
    does not claim a change the file never got: previously memory changed first, so
    /quiet looked on until the next restart silently turned it off."""
    store = ChannelSettingsStore(tmp_path)
    store.update(1, quiet=True)
    before = (tmp_path / FILE_NAME).read_text()
    real_fdopen = files.os.fdopen

    def dies_halfway(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        f.write('{"1": {"qu')
        f.close()
        raise OSError("No space left on device")

    monkeypatch.setattr(files.os, "fdopen", dies_halfway)
    with pytest.raises(ChannelSettingsError, match="No space left"):
        store.update(2, quiet=True)
    assert (tmp_path / FILE_NAME).read_text() == before
    assert json.loads(before) == {"1": {"chattiness": None, "quiet": True, "forgotten_before": None}}
    assert store.get(2) == ChannelControls(), "memory agrees with the file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE_NAME], "no temporary file left behind"


def test_a_broken_file_names_itself(tmp_path):
    (tmp_path / FILE_NAME).write_text("{not json")
    with pytest.raises(ChannelSettingsError, match=FILE_NAME):
        ChannelSettingsStore(tmp_path)
