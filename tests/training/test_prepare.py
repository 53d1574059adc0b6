"""Loss masks: exactly the assistant turns are trained, under four real chat templates.

The seed system searched for a marker's token ids, which silently dropped
examples when context changed the tokenization. These tests decode the labelled
tokens of whole conversations with the real SmolLM2 tokenizer carrying each
template verbatim (tests/data/templates).
"""

from pathlib import Path

import pytest

from models.loading import load_tokenizer, resolve_model
from models.template import ChatFormat
from training.prepare import IGNORE, encode_conversation, trained_text

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "templates"
CONVERSATION = [
    {"role": "user", "name": "Ana", "content": "anyone know the capital of peru?"},
    {"role": "assistant", "content": "It's Lima."},
    {"role": "user", "name": "Bo", "content": "ty bot"},
    {"role": "user", "name": "Ana", "content": "@assistant and bolivia?"},
    {"role": "assistant", "content": "Sucre is the constitutional capital; La Paz is the seat of government."},
    {"role": "user", "name": "Bo", "content": "lol nerd"},
]
RESPONSES = ["(response) It's Lima.", "(silence)",
             "(response) Sucre is the constitutional capital; La Paz is the seat of government.", "(silence)"]


@pytest.fixture(scope="module")
def base_tokenizer_source():
    return resolve_model("embedded")


@pytest.mark.parametrize("template, separator", [
    ("default", "<|im_end|>"), ("chatml", "<|im_end|>"), ("zephyr", "<|im_end|>"),
    ("llama2", " <|im_end|>"), ("openchat", "<|end_of_turn|>"),
])
def test_exactly_the_assistant_turns_are_trained(base_tokenizer_source, template, separator):
    tokenizer = load_tokenizer(base_tokenizer_source)
    if template != "default":
        tokenizer.chat_template = (TEMPLATES / f"{template}.jinja").read_text()
    fmt = ChatFormat(tokenizer)
    [example] = encode_conversation(fmt, CONVERSATION, max_length=1024)
    trained = trained_text(tokenizer, example)
    expected = "".join(response + separator for response in RESPONSES)
    # Llama-2 puts a space before the content; a straddling token carries it in.
    assert trained.replace(" (", "(").strip() == expected.replace(" (", "(").strip()
    untrained = tokenizer.decode([t for t, label in zip(example["input_ids"], example["labels"], strict=True)
                                  if label == IGNORE])
    for message in CONVERSATION:
        if message["role"] == "user":
            assert message["content"] in untrained


def test_long_conversations_are_split_so_every_assistant_turn_is_trained_once(tokenizer):
    fmt = ChatFormat(tokenizer)
    conversation = []
    for i in range(40):
        conversation.append({"role": "user", "name": "Ana", "content": f"message number {i} " + "la " * 20})
        if i % 5 == 0:
            conversation.append({"role": "assistant", "content": f"answer {i}"})
    examples = encode_conversation(fmt, conversation, max_length=300)
    assert len(examples) > 1
    assert all(len(e["input_ids"]) <= 300 for e in examples)
    trained = "".join(trained_text(tokenizer, e) for e in examples)
    assert trained.count("(response)") == 8
    assert trained.count("(silence)") == 32
