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


def test_decision_marker_tokens_carry_the_decision_weight(tokenizer):
    fmt = ChatFormat(tokenizer)
    [plain] = encode_conversation(fmt, CONVERSATION, max_length=1024)
    [weighted] = encode_conversation(fmt, CONVERSATION, max_length=1024, decision_weight=4.0)
    assert plain["loss_weights"] == [1.0 if label != IGNORE else 0.0 for label in plain["labels"]]
    weights = weighted["loss_weights"]
    labelled = [i for i, label in enumerate(weighted["labels"]) if label != IGNORE]
    assert sum(weights[i] for i in labelled) == pytest.approx(len(labelled))  # mean 1: the loss scale stays
    assert all(w == 0.0 for i, w in enumerate(weights) if i not in labelled)
    heavy = {i for i in labelled if weights[i] > 1.0}
    marker_text = tokenizer.decode([weighted["input_ids"][i] for i in sorted(heavy)])
    # Exactly the four markers weigh more: not the reply words, not the end of turn.
    assert marker_text.replace(" ", "") == "(response)(silence)(response)(silence)"
    light = [weights[i] for i in labelled if i not in heavy]
    assert max(weights) == pytest.approx(4 * light[0])


def test_the_weighted_loss_gives_decision_tokens_their_weight():
    """A custom compute_loss must weigh exactly as the weights say: scaling one token's weight
    scales its share of the loss, and unlabelled positions never count."""
    import torch

    from training.finetune import weighted_loss

    torch.manual_seed(0)
    vocab, width = 11, 8

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, width)
            self.head = torch.nn.Linear(width, vocab, bias=False)

        @property
        def base_model(self):
            embed = self.embed

            class Backbone:
                def __call__(self, input_ids, attention_mask, use_cache):
                    return type("Out", (), {"last_hidden_state": embed(input_ids)})()

            return Backbone()

        def get_output_embeddings(self):
            return self.head

    model = Tiny()
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    labels = torch.tensor([[IGNORE, IGNORE, 3, 4, 5]])
    logits = model.head(model.embed(ids))[0, :-1]
    per_token = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")[1:]
    for weights in ([0, 0, 1, 1, 1], [0, 0, 3, 1, 1], [9, 9, 1, 0, 2]):
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
                  "loss_weights": torch.tensor([weights], dtype=torch.float)}
        expected = (per_token * torch.tensor(weights[2:], dtype=torch.float)).sum() / 3
        assert weighted_loss(model, inputs).item() == pytest.approx(expected.item(), rel=1e-5)


def test_notes_open_every_piece_and_are_never_trained(tokenizer):
    fmt = ChatFormat(tokenizer)
    note = "Club rules: the pool opens at 7."
    examples = encode_conversation(fmt, CONVERSATION, max_length=1024, notes=[note])
    [example] = examples
    text = tokenizer.decode(example["input_ids"])
    assert "Notes:" in text and note in text
    assert text.index(note) < text.index(CONVERSATION[0]["content"])
    assert note not in trained_text(tokenizer, example)
