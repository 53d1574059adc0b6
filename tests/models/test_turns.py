"""The turn format and the bot-name rewrite (pure functions, no model)."""

from models.names import parse_names, rewrite_bot_names
from models.turns import RESPONSE, SILENCE, Turn, from_records, strip_markers, to_chat_messages


def test_every_user_turn_gets_an_assistant_turn_except_the_open_last_one():
    turns = [Turn.user("Ana", "hi"), Turn.user("Bo", "@assistant 2+2?"), Turn.assistant("4"),
             Turn.user("Ana", "ty")]
    assert to_chat_messages(turns) == [
        {"role": "user", "content": "Ana: hi"},
        {"role": "assistant", "content": SILENCE},
        {"role": "user", "content": "Bo: @assistant 2+2?"},
        {"role": "assistant", "content": f"{RESPONSE} 4"},
        {"role": "user", "content": "Ana: ty"},
    ]


def test_split_bot_messages_merge_and_a_leading_bot_message_is_dropped():
    turns = [Turn.assistant("old answer"), Turn.user("Ana", "q"), Turn.assistant("part 1"),
             Turn.assistant("part 2")]
    assert to_chat_messages(turns) == [
        {"role": "user", "content": "Ana: q"},
        {"role": "assistant", "content": f"{RESPONSE} part 1\npart 2"},
    ]


def test_records_round_trip_to_turns():
    records = [{"role": "user", "name": "Ana", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert from_records(records) == [Turn.user("Ana", "hi"), Turn.assistant("hello")]


def test_strip_markers():
    assert strip_markers("(response) Paris (silence)") == "Paris"


def test_bot_names_become_assistant_as_whole_words_in_any_case():
    names = parse_names("Sage, Sage Bot")
    assert names == ("Sage", "Sage Bot")
    assert rewrite_bot_names("hey SAGE, ask sage bot about sausage", names) == (
        "hey assistant, ask assistant about sausage"
    )
    assert rewrite_bot_names("@Sage what's up", names) == "@assistant what's up"
    assert rewrite_bot_names("sages and sagebrush", names) == "sages and sagebrush"
    assert rewrite_bot_names("unchanged", ()) == "unchanged"


def test_text_the_tokenizer_cannot_take_is_cleaned_where_turns_are_made(tokenizer):
    """Previously a lone surrogate reached the tokenizer, which raised on every later decision."""
    from models.turns import clean_text

    turn = Turn.user("Ana\x00", "hi \ud800 there \udcff\x00 \ud83d\ude00")
    assert turn.name == "Ana"
    assert turn.text == "hi \ufffd there \ufffd \U0001f600"
    tokenizer(turn.text)  # no UnicodeEncodeError
    assert from_records([{"role": "user", "name": "B\ud800", "content": "x\x00"}]) == [Turn.user("B\ufffd", "x")]
    assert clean_text("plain ascii") == "plain ascii"


def test_display_names_are_clipped_to_discords_32_characters():
    """Previously a 100,000-character name became 50,000 tokens in every one of its turns."""
    from models.turns import MAX_NAME_CHARS

    assert MAX_NAME_CHARS == 32
    assert Turn.user("N" * 100_000, "hi").name == "N" * 32
    assert Turn("user", "hi", "é" * 40).name == "é" * 32  # however the turn is made
