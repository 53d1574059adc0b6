"""Conversations -> token ids and labels, with the loss on the assistant turns only.

As in the seed system: each person's line becomes ``Name: text``, an assistant
turn follows every user turn (``(silence)`` where the data has none,
``(response) text`` where it has one), no system prompt, rendered with the base
model's own chat template. The labels keep exactly the tokens of the assistant
turns (marker, words and end-of-turn) and mask everything else with -100.

The mask comes from character offsets in the fully rendered text, not from
searching for a marker's token ids: tokenization depends on context, and the
seed's token search silently dropped examples when it failed.

Each example also carries ``loss_weights``: the tokens of the decision marker that
opens every assistant turn (``(silence)`` / ``(response)``) weigh ``decision_weight``
times a reply token, so the one decision per message is not drowned by the many
words of the few replies (see ``training.finetune.WeightedSFTTrainer``).
"""

from __future__ import annotations

from collections.abc import Sequence

from models.template import ChatFormat
from models.turns import MARKERS, SILENCE, Turn, from_records
from training.dataset import Conversation

IGNORE = -100


def training_messages(fmt: ChatFormat, turns: Sequence[Turn], notes: Sequence[str] = ()) -> list[dict]:
    messages = fmt.messages(turns, notes=notes)
    if messages and messages[-1]["role"] == "user":
        messages.append({"role": "assistant", "content": SILENCE})
    return messages


def encode_messages(fmt: ChatFormat, messages: list[dict], decision_weight: float = 1.0) -> dict:
    """Token ids, labels and loss weights (mean 1 over the labelled tokens) for one conversation."""
    text, spans = fmt.assistant_spans(messages)
    marker_ends = [span.start + _marker_length(text, span.start) for span in spans]
    encoded = fmt.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, labels, weights, span_index = encoded["input_ids"], [], [], 0
    for token_id, (start, end) in zip(ids, encoded["offset_mapping"], strict=True):
        while span_index < len(spans) and spans[span_index].end <= start:
            span_index += 1
        inside = span_index < len(spans) and start < spans[span_index].end and end > spans[span_index].start
        labels.append(token_id if inside else IGNORE)
        is_decision = inside and start < marker_ends[span_index]
        weights.append((decision_weight if is_decision else 1.0) if inside else 0.0)
    total = sum(weights)
    labelled = sum(label != IGNORE for label in labels)
    scale = labelled / total if total else 0.0
    return {"input_ids": ids, "labels": labels, "loss_weights": [w * scale for w in weights]}


def _marker_length(text: str, start: int) -> int:
    return next((len(m) for m in MARKERS if text.startswith(m, start)), 0)


def encode_conversation(fmt: ChatFormat, conversation: list[dict], max_length: int,
                        decision_weight: float = 1.0, notes: Sequence[str] = ()) -> list[dict]:
    """One conversation -> one or more examples of at most ``max_length`` tokens.

    A conversation too long for one example is cut at user turns into
    consecutive pieces, so every assistant turn is still trained once. The notes
    open every piece, as they open the bot's window (models/notes.py ``notes_block``).
    """
    turns = from_records(conversation)
    examples, start = [], 0
    while start < len(turns):
        end = len(turns)
        example = encode_messages(fmt, training_messages(fmt, turns[start:end], notes), decision_weight)
        while len(example["input_ids"]) > max_length and end - start > 1:
            end = _previous_user_turn(turns, start, end)
            example = encode_messages(fmt, training_messages(fmt, turns[start:end], notes), decision_weight)
        if len(example["input_ids"]) > max_length:
            raise ValueError(f"a single turn does not fit max_length={max_length}")
        examples.append(example)
        start = end
    return examples


def _previous_user_turn(turns: Sequence[Turn], start: int, end: int) -> int:
    """The largest cut point before ``end`` where a user turn begins (keeps bot turns with their prompt)."""
    cut = end - 1
    while cut > start + 1 and turns[cut].role != "user":
        cut -= 1
    return max(cut, start + 1)


def encode_dataset(fmt: ChatFormat, conversations: Sequence[Conversation], max_length: int,
                   decision_weight: float = 1.0) -> list[dict]:
    """Every conversation of ``training.dataset.load_files`` -> examples, tokenized once."""
    examples = []
    for notes, messages in conversations:
        examples.extend(encode_conversation(fmt, messages, max_length, decision_weight, notes))
    return examples


def trained_text(tokenizer, example: dict) -> str:
    """The text the loss is computed on: decode exactly the labelled tokens (for checks and tests)."""
    return tokenizer.decode([t for t, label in zip(example["input_ids"], example["labels"], strict=True)
                             if label != IGNORE])
