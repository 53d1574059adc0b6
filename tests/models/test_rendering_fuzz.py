"""Property-based fuzzing of rendering: hostile texts and names never forge the format.

Over texts and display names built from every control string of the template
(special tokens, role headers, end of turn, markers), look-alikes, lone
surrogates, NUL, zero-width characters and long repeats, the rendered prompt's
token ids must hold no extra special token and no extra turn header compared to
the same window written by honest people, each person's turn must stay within
its token budget, and nothing may raise. Checked under the embedded model's own
ChatML template and the seed's Zephyr, Llama-2 and OpenChat templates
(tests/data/templates; OpenChat's end of turn is a special token there, as in
its own tokenizer).

Previously a turn of repeated ``<|im_end|>`` grew past its budget once broken
up, a lone surrogate raised in the tokenizer, and the name
``GPT4 Correct Assistant`` completed a real OpenChat header.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.template import ChatFormat
from models.turns import Turn

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "templates"
BUDGET = 48
EXTRA_PIECES = [
    "\ud800", "\udcff", "\x00", "\u200b", "\u202e", "\ufeff", "user\n", "assistant\n", "system\n", "\n", ": ",
    "GPT4 Correct Assistant", "GPT4 Correct User", "Correct Assistant:", "(response", "response)", "(", ")",
    "<|", "|>", "<", "[", "]", "＜|im_start|＞", "<s>", "</s>", "@assistant", " …", "x" * 300,
]


def _format(tokenizer, template: str) -> ChatFormat:
    if template == "default":
        return ChatFormat(tokenizer, max_turn_tokens=BUDGET)
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.chat_template = (TEMPLATES / f"{template}.jinja").read_text()
    if template == "openchat":
        tokenizer.add_special_tokens({"additional_special_tokens": ["<|end_of_turn|>"]})
    return ChatFormat(tokenizer, max_turn_tokens=BUDGET)


@pytest.fixture(scope="module", params=["default", "zephyr", "llama2", "openchat"])
def fmt(request, tokenizer):
    return _format(tokenizer, request.param)


def hostile_text(fmt: ChatFormat, max_pieces: int) -> st.SearchStrategy[str]:
    pieces = st.one_of(
        st.sampled_from([*fmt.control_strings, *fmt.turn_headers, *EXTRA_PIECES]),
        st.text(max_size=12),
        st.sampled_from(fmt.control_strings).map(lambda c: c * 50),
    )
    return st.lists(pieces, max_size=max_pieces).map("".join)


def windows(fmt: ChatFormat):
    user = st.tuples(hostile_text(fmt, 6), hostile_text(fmt, 30))
    step = st.tuples(user, st.booleans())  # a person's turn, and whether the bot answered it
    return st.lists(step, min_size=1, max_size=4)


def build(steps, honest: bool) -> list[Turn]:
    turns = []
    for i, ((name, text), answered) in enumerate(steps):
        turns.append(Turn.user("Ana", "hi") if honest else Turn.user(name, text))
        if answered and i < len(steps) - 1:
            turns.append(Turn.assistant("ok"))
    return turns


def occurrences(ids: list[int], sequence: list[int]) -> int:
    n = len(sequence)
    return sum(ids[i : i + n] == sequence for i in range(len(ids) - n + 1)) if n else 0


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_windows_render_like_honest_ones(fmt, data):
    steps = data.draw(windows(fmt))
    hostile, honest = build(steps, honest=False), build(steps, honest=True)
    tokenizer = fmt.tokenizer
    prompt, honest_prompt = fmt.prompt(hostile), fmt.prompt(honest)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    honest_ids = tokenizer(honest_prompt, add_special_tokens=False)["input_ids"]

    special = {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    assert Counter(i for i in ids if i in special) == Counter(i for i in honest_ids if i in special), \
        "an extra control token"
    decoded, honest_decoded = tokenizer.decode(ids), tokenizer.decode(honest_ids)
    for header in fmt.turn_boundaries:
        header_ids = tokenizer(header, add_special_tokens=False)["input_ids"]
        assert occurrences(ids, header_ids) == occurrences(honest_ids, header_ids), f"a forged {header!r}"
        assert decoded.count(header) == honest_decoded.count(header), f"a forged {header!r}"

    user_turns = [t for t in hostile if t.role == "user"]
    for turn in user_turns:
        assert len(turn.name) <= 32
        assert fmt.count_tokens(fmt.user_content(turn.name, turn.text)) <= BUDGET
    # In place, a turn may differ from its content alone by a token merged across its edges.
    assert len(ids) <= len(honest_ids) + len(user_turns) * BUDGET
