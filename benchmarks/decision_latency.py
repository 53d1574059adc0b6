"""Decision latency: the seed system's naive generate against the engine's cached ``decide``.

Run from the checkout (``make bench`` does the same with the defaults)::

    .venv/bin/python -m benchmarks.decision_latency
    .venv/bin/python -m benchmarks.decision_latency --messages 120 --window-tokens 1024 --naive-samples 30

It replays one long multi-user conversation: the conversations of
``data/train.jsonl`` one after another, with their gold assistant turns, so the
room has dozens of different people and the bot speaks now and then. Each
person's message is one decision, given the newest ``MAX_WINDOW_MESSAGES`` turns
as the bot would. The replay first fills the token window (the engine has
trimmed it once), and only then measures ``--messages`` decisions: steady state.

Measured in the same process:

* **naive** (the seed system): render the window's last ``--window-tokens``
  tokens through the chat template, ``generate`` up to 32 new tokens greedily
  with no cache kept between calls (the model may stop early at its end token),
  and look for the ``(response)`` marker in the output. It is slow, so only
  ``--naive-samples`` messages, spread evenly over the measured ones, are timed.
  Choosing where the window starts is not timed; rendering, tokenizing,
  generating and decoding are.
* **engine**: ``Engine.decide`` with its incremental KV cache, in the loader's
  default dtype (float32 on a CPU) and again in bfloat16.
* **floor**: the arithmetic floor of one decision, its FLOPs over the bf16
  matrix-multiply rate measured here with ``torch.matmul``. FLOPs are
  ``2 * linear parameters * new tokens`` (all ``nn.Linear`` weights of the
  decoder layers) plus ``2 * hidden * vocab`` for the LM head over the one kept
  position, plus attention ``4 * layers * heads * head_dim * context`` per new
  token. Embedding lookups, norms and activations are not counted.

Peak memory is the resident set size high-water mark of each phase (Linux
``VmHWM``, reset between phases through ``/proc/self/clear_refs``), reported as
the peak and as its rise over the RSS when the phase began; where that reset is
not allowed it falls back to the process-wide ``ru_maxrss``. tracemalloc is no
use here: torch allocates outside Python's allocator.

The table comes first; the last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from bot.window import MAX_WINDOW_MESSAGES
from models.engine import Engine, _shared_prefix_length
from models.loading import load_model
from models.template import ChatFormat
from models.turns import RESPONSE, Turn, from_records

DATA = Path(__file__).resolve().parent.parent / "data" / "train.jsonl"
NAIVE_NEW_TOKENS = 32
# The bf16 rate is measured on the decoder's widest matmul, (tokens x hidden) @
# (hidden x intermediate), with as many rows as a long prefill: big enough for
# the CPU's best rate, so the floor is a floor and not a small-matrix penalty.
RATE_ROWS = 512


# -- the conversation --------------------------------------------------------------


def replay_conversation(path: Path = DATA) -> list[Turn]:
    """All conversations of the file as one channel, each turn with a unique id."""
    turns: list[Turn] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            for turn in from_records(json.loads(line)):
                turns.append(Turn(turn.role, turn.text, turn.name, turn_id=len(turns)))
    return turns


def decision_windows(turns: list[Turn]):
    """For every person's message, the window the bot would pass: the newest turns up to it."""
    for end, turn in enumerate(turns, start=1):
        if turn.role == "user":
            yield turns[max(0, end - MAX_WINDOW_MESSAGES) : end]


# -- measurements ------------------------------------------------------------------


class PeakMemory:
    """RSS high-water mark of one phase, in MiB."""

    def __enter__(self):
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.method = "VmHWM"
        except OSError:
            self.method = "ru_maxrss"
        self.start_mb = _status_mb("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.method == "VmHWM":
            self.peak_mb = _status_mb("VmHWM")
        else:
            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.rise_mb = self.peak_mb - self.start_mb
        return False


def _status_mb(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bf16_matmul_gflops(rows: int, hidden: int, intermediate: int, seconds: float = 1.0) -> float:
    """The bf16 matrix-multiply rate of this machine, now, in GFLOP/s (best of several timed batches)."""
    a = torch.randn(rows, hidden, dtype=torch.bfloat16)
    b = torch.randn(hidden, intermediate, dtype=torch.bfloat16)
    for _ in range(3):
        torch.matmul(a, b)
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(10):
            torch.matmul(a, b)
        best = min(best, (time.perf_counter() - start) / 10)
    return 2 * rows * hidden * intermediate / best / 1e9


def linear_parameters(model) -> int:
    """Weights of every nn.Linear except the LM head: what each new token multiplies through."""
    head = model.get_output_embeddings()
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)


def decision_flops(model, new_tokens: int, context: int) -> float:
    """FLOPs of one decision feeding ``new_tokens`` after ``context - new_tokens`` cached ones."""
    config = model.config
    attention_width = config.num_attention_heads * getattr(
        config, "head_dim", config.hidden_size // config.num_attention_heads)
    cached = context - new_tokens
    # Token i attends to cached + i + 1 positions: QK^T and AV, 2 FLOPs per multiply-add each.
    attended = sum(cached + i + 1 for i in range(new_tokens))
    return (2 * linear_parameters(model) * new_tokens
            + 2 * config.hidden_size * config.vocab_size
            + 4 * config.num_hidden_layers * attention_width * attended)


def replay_engine(engine: Engine, windows: list, messages: int) -> dict:
    """Decide on every window in turn; time the ``messages`` decisions after the window first trimmed."""
    key = "bench"
    times, new_tokens, contexts, probabilities = [], [], [], []
    first = None
    for index, window in enumerate(windows):
        before = list(engine._session(key).ids)
        start = time.perf_counter()
        probability = engine.decide(window, key=key)
        elapsed = time.perf_counter() - start
        session = engine._sessions[key]
        if first is None and session.first_turn == window[0]:
            continue  # still filling the window: everything since the start fits
        first = index if first is None else first
        times.append(elapsed * 1000)
        # Counted as Engine._forward does: at least the last token is always fed.
        new_tokens.append(len(session.ids) - min(_shared_prefix_length(before, session.ids), len(session.ids) - 1))
        contexts.append(len(session.ids))
        probabilities.append(probability)
        if len(times) == messages:
            return {"first": first, "times": times, "new_tokens": new_tokens, "contexts": contexts,
                    "probabilities": probabilities}
    raise SystemExit(f"the conversation ran out after {len(times)} measured messages; ask for fewer")


def naive_window(fmt: ChatFormat, window: list[Turn], window_tokens: int) -> list[Turn]:
    """The seed's window: the newest turns, from a person's message on, whose render fits the budget."""
    start = len(window) - 1
    for i in range(len(window) - 2, -1, -1):
        if window[i].role != "user":
            continue
        if len(_encode(fmt, fmt.prompt(window[i:]))) > window_tokens:
            break
        start = i
    return window[start:]


def _encode(fmt: ChatFormat, text: str) -> list[int]:
    return fmt.tokenizer(text, add_special_tokens=False)["input_ids"]


def naive_decide(model, fmt: ChatFormat, turns: list[Turn]) -> bool:
    """The seed system: render everything, generate with no cache kept between calls, look for the marker."""
    tokenizer = fmt.tokenizer
    inputs = tokenizer(fmt.prompt(turns), add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=NAIVE_NEW_TOKENS, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return RESPONSE in tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def replay_naive(model, fmt: ChatFormat, windows: list, window_tokens: int) -> dict:
    times, prompt_tokens = [], []
    naive_decide(model, fmt, windows[0][-1:])  # one-time set-up of generate is not a per-message cost
    for window in windows:
        turns = naive_window(fmt, window, window_tokens)
        prompt_tokens.append(len(_encode(fmt, fmt.prompt(turns))))
        start = time.perf_counter()
        naive_decide(model, fmt, turns)
        times.append((time.perf_counter() - start) * 1000)
    return {"times": times, "prompt_tokens": prompt_tokens}


def spread(total: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)``."""
    return sorted({round(i * (total - 1) / max(1, count - 1)) for i in range(count)}) if count > 1 else [total // 2]


# -- the run -----------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decision_latency",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=120, help="decisions measured after the window is full")
    parser.add_argument("--window-tokens", type=int, default=1024, help="the token budget of the window")
    parser.add_argument("--naive-samples", type=int, default=30,
                        help="how many of the measured messages the slow naive path also runs on")
    parser.add_argument("--model", default="embedded", help="model id or folder (default: the embedded model)")
    parser.add_argument("--adapter", default="auto",
                        help="LoRA adapter folder, 'auto' (the shipped one when there is one, as the bot) or 'none'")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.messages < 1 or args.naive_samples < 1:
        raise SystemExit("--messages and --naive-samples must be at least 1")
    windows = list(decision_windows(replay_conversation()))

    loaded = load_model(args.model, args.adapter)
    model = loaded.model
    engine = Engine(model, loaded.tokenizer, window_tokens=args.window_tokens)
    with PeakMemory() as engine_memory:
        measured = replay_engine(engine, windows, args.messages)

    picks = spread(args.messages, min(args.naive_samples, args.messages))
    with PeakMemory() as naive_memory:
        naive = replay_naive(model, engine.format, [windows[measured["first"] + i] for i in picks],
                             args.window_tokens)

    hidden, intermediate = model.config.hidden_size, model.config.intermediate_size
    gflops = bf16_matmul_gflops(RATE_ROWS, hidden, intermediate)
    flops = [decision_flops(model, n, c) for n, c in zip(measured["new_tokens"], measured["contexts"])]
    del engine, model

    bf16 = load_model(args.model, args.adapter, dtype="bfloat16")
    with PeakMemory() as bf16_memory:
        measured_bf16 = replay_engine(Engine(bf16.model, bf16.tokenizer, window_tokens=args.window_tokens),
                                      windows, args.messages)

    engine_p50, naive_p50 = statistics.median(measured["times"]), statistics.median(naive["times"])
    bf16_p50 = statistics.median(measured_bf16["times"])
    floor_flops = statistics.median(flops)
    floor_ms = floor_flops / (gflops * 1e9) * 1000
    result = {
        "naive_p50_ms": round(naive_p50, 2),
        "naive_p95_ms": round(percentile(naive["times"], 0.95), 2),
        "engine_p50_ms": round(engine_p50, 2),
        "engine_p95_ms": round(percentile(measured["times"], 0.95), 2),
        "speedup": round(naive_p50 / engine_p50, 1),
        "floor_ms": round(floor_ms, 2),
        "engine_over_floor": round(engine_p50 / floor_ms, 2),
        "engine_new_tokens_p50": statistics.median(measured["new_tokens"]),
        "engine_context_tokens_p50": statistics.median(measured["contexts"]),
        "naive_prompt_tokens_p50": statistics.median(naive["prompt_tokens"]),
        "dtype": loaded.dtype,
        "engine_bf16_p50_ms": round(bf16_p50, 2),
        "engine_bf16_p95_ms": round(percentile(measured_bf16["times"], 0.95), 2),
        "speedup_bf16": round(naive_p50 / bf16_p50, 1),
        "engine_bf16_over_floor": round(bf16_p50 / floor_ms, 2),
        # How far bf16 decisions drift from the default dtype's on the same messages.
        "bf16_max_abs_diff": round(max(abs(a - b) for a, b in
                                       zip(measured["probabilities"], measured_bf16["probabilities"])), 4),
        "floor_gflop": round(floor_flops / 1e9, 3),
        "bf16_matmul_gflops": round(gflops, 1),
        "rate_shape": f"({RATE_ROWS}x{hidden}) @ ({hidden}x{intermediate})",
        "peak_rss_mb": {name: round(m.peak_mb) for name, m in
                        (("engine", engine_memory), ("naive", naive_memory), ("engine_bf16", bf16_memory))},
        "messages": args.messages,
        "naive_samples": len(naive["times"]),
        "window_tokens": args.window_tokens,
        "threads": torch.get_num_threads(),
        "model": args.model,
        "adapter": str(loaded.adapter) if loaded.adapter else None,
    }
    print_table(result, measured, naive, measured_bf16, engine_memory, naive_memory, bf16_memory)
    print(json.dumps(result))
    return result


def print_table(result, measured, naive, measured_bf16, engine_memory, naive_memory, bf16_memory) -> None:
    rows = [
        (f"naive generate ({result['dtype']})", naive["times"], "-", naive_memory),
        (f"engine decide ({result['dtype']})", measured["times"], statistics.median(measured["new_tokens"]),
         engine_memory),
        ("engine decide (bfloat16)", measured_bf16["times"], statistics.median(measured_bf16["new_tokens"]),
         bf16_memory),
    ]
    print(f"decision latency: {result['messages']} messages after the {result['window_tokens']}-token window "
          f"filled, model {result['model']}, adapter {result['adapter'] or 'none (bare model)'}, "
          f"{result['threads']} torch threads")
    print(f"{'path':<28}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'new tok':>9}{'peak RSS MiB':>14}{'rise MiB':>10}")
    for name, times, tokens, memory in rows:
        print(f"{name:<28}{len(times):>5}{statistics.median(times):>10.1f}{percentile(times, 0.95):>10.1f}"
              f"{tokens!s:>9}{memory.peak_mb:>14.0f}{memory.rise_mb:>10.0f}")
    print(f"{'floor (arithmetic)':<28}{'':>5}{result['floor_ms']:>10.2f}{'':>10}"
          f"{result['engine_new_tokens_p50']!s:>9}")
    print(f"naive prompt: p50 {result['naive_prompt_tokens_p50']} tokens, up to {NAIVE_NEW_TOKENS} generated; "
          f"engine context p50 {result['engine_context_tokens_p50']} tokens")
    print(f"floor: p50 decision {result['floor_gflop']} GFLOP (linear layers + LM head over 1 position + "
          f"attention) at {result['bf16_matmul_gflops']} GFLOP/s, torch.matmul bf16 {result['rate_shape']}")
    print(f"peak memory: {engine_memory.method} high-water RSS of each phase; rise over the phase's starting RSS")
    print(f"speedup {result['speedup']}x ({result['dtype']} engine), {result['speedup_bf16']}x (bf16 engine); "
          f"engine p50 is {result['engine_over_floor']}x the floor; bf16 decisions differ from "
          f"{result['dtype']} by up to {result['bf16_max_abs_diff']}")


if __name__ == "__main__":
    main(sys.argv[1:])
