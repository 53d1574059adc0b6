"""Rolling windows: time order by message id, bounded, edits and deletions, and one
history read per channel however many messages arrive while it runs."""

from __future__ import annotations

import asyncio

from bot.window import ChannelWindow, WindowStore
from models.turns import Turn


def test_turns_come_out_in_message_order_whatever_the_arrival_order():
    window = ChannelWindow([Turn.user("Bo", "second", 20), Turn.user("Ana", "first", 10)])
    window.add(Turn.assistant("third", 30))
    assert [t.text for t in window.turns()] == ["first", "second", "third"]
    assert [t.text for t in window.turns(upto=20)] == ["first", "second"]
    assert window.role_of(30) == "assistant" and window.role_of(99) is None


def test_window_is_bounded_and_drops_the_oldest():
    window = ChannelWindow(max_messages=3)
    for i in range(5):
        window.add(Turn.user("Ana", f"m{i}", i))
    assert [t.text for t in window.turns()] == ["m2", "m3", "m4"]


def test_edit_replaces_and_delete_removes():
    window = ChannelWindow([Turn.user("Ana", "teh", 1), Turn.user("Bo", "oops", 2)])
    assert window.update(Turn.user("Ana", "the", 1))
    assert not window.update(Turn.user("Cy", "never seen", 3)), "an edit of an unknown message adds nothing"
    assert window.remove(2) and not window.remove(2)
    assert [t.text for t in window.turns()] == ["the"]


async def test_history_is_read_once_while_messages_pile_up():
    store = WindowStore()
    reads = 0

    async def read_history():
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.05)
        return [Turn.user("Ana", "old", 1)]

    windows = await asyncio.gather(*(store.load(7, read_history) for _ in range(5)))
    assert reads == 1
    assert all(w is windows[0] for w in windows)
    assert (await store.load(7, read_history)) is windows[0] and reads == 1


async def test_least_recently_used_channel_is_evicted_and_rebuilt_on_demand():
    store = WindowStore(max_channels=2)

    async def empty():
        return []

    for channel_id in (1, 2):
        await store.load(channel_id, empty)
    store.get(1)  # 1 is now more recent than 2
    await store.load(3, empty)
    assert store.get(2) is None and store.get(1) is not None and len(store) == 2
