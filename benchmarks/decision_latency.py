"""Decision latency: the seed system's naive generate against the engine's cached ``decide``.

Run from the checkout (``make bench`` does the same with the defaults)::

    .venv/bin/python -m benchmarks.decision_latency
    .venv/bin/python -m benchmarks.decision_latency --messages 120 --window-tokens 512 --naive-samples 30
    .venv/bin/python -m benchmarks.decision_latency --adapter none     # the bare base model

It replays one long multi-user conversation: the conversations of
``data/train.jsonl`` one after another, with their gold assistant turns, so the
room has dozens of different people and the bot speaks now and then. Each
person's message is one decision on the newest ``MAX_WINDOW_MESSAGES`` turns,
as the bot passes them. The replay first fills the token window (until the
engine has trimmed it once) and only then measures ``--messages`` decisions:
steady state. The model is loaded as the bot loads it (``models.loading.load_engine``),
with the bot's adapter by default (``auto``: the shipped one when there is one).

Three paths are timed on the same messages, interleaved message by message so
that a machine busy with other work slows all of them alike:

* **naive** (the seed system): render the newest turns that fit
  ``--window-tokens`` through the chat template, ``generate`` up to 32 new
  tokens greedily with no cache kept between calls (the model may stop early
  at its end token), and look for the ``(response)`` marker in the output. It
  is slow, so only ``--naive-samples`` of the measured messages, spread evenly,
  run it. Choosing where its window starts is not timed; rendering,
  tokenizing, generating and decoding are.
* **engine**: ``Engine.decide`` with its incremental KV cache, in the loader's
  default dtype (float32 on a CPU).
* **engine bf16**: the same on the model loaded in bfloat16.

The **floor** is the arithmetic floor of one decision: its FLOPs over the bf16
matrix-multiply rate measured here with ``torch.matmul`` (best of the runs
before and after the replay). FLOPs per decision are ``2 * linear parameters *
new tokens`` (every ``nn.Linear`` weight of the decoder, adapter included),
plus attention, ``4 * layers * heads * head_dim`` per new token and attended
position, plus the two rows of the LM head a decision reads. Embedding
lookups, norms and activations are not counted. ``floor_ms`` is the median
over the measured decisions.

A decision feeds a few dozen tokens, so it is bound by memory more than by
arithmetic: every forward pass reads all of the decoder's linear weights. The
**weight-read floor** (``weight_read_floor_ms``) is their size in the engine's
dtype over the memory read rate measured here (summing a 512 MiB tensor).

**Memory.** Both models stay loaded, so the process RSS holds both. For each
path the table shows the weights it runs on and the most the RSS rose during
one of its calls (Linux ``VmHWM``, reset before each call through
``/proc/self/clear_refs``; the reset is not timed). Where that reset is not
allowed only the process-wide high-water mark (``ru_maxrss``) is known and
the rise column is empty. tracemalloc is no use: torch allocates outside
Python's allocator.

The table comes first; the last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.measure import (
    Measured,
    bf16_matmul_gflops,
    decision_flops,
    linear_bytes,
    read_gbytes_per_second,
    spread,
    timed,
    weights_mb,
)
from bot.window import MAX_WINDOW_MESSAGES
from models.loading import load_engine
from models.template import ChatFormat
from models.turns import RESPONSE, WINDOW_TOKENS, Turn, from_records

DATA = Path(__file__).resolve().parent.parent / "data" / "train.jsonl"
NAIVE_NEW_TOKENS = 32
# The bf16 rate is measured on the decoder's widest matmul, (rows x hidden) @
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


def decision_windows(turns: list[Turn]) -> list[list[Turn]]:
    """For every person's message, the window the bot would pass: the newest turns up to it."""
    return [turns[max(0, end - MAX_WINDOW_MESSAGES) : end]
            for end, turn in enumerate(turns, start=1) if turn.role == "user"]


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


# -- the run -----------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decision_latency",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=120, help="decisions measured after the window is full")
    parser.add_argument("--window-tokens", type=int, default=WINDOW_TOKENS,
                        help=f"the token budget of the window (default: the bot's, {WINDOW_TOKENS})")
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
    windows = decision_windows(replay_conversation())
    load_at_start = os.getloadavg()[0]

    # Loaded as the bot loads its engine (an adapter is folded into the weights on a CPU).
    engine = load_engine(args.model, args.adapter, window_tokens=args.window_tokens)
    engine_bf16 = load_engine(args.model, args.adapter, window_tokens=args.window_tokens, dtype="bfloat16")
    model, dtype = engine.model, engine.info["dtype"]
    naive = Measured(f"naive generate ({dtype})", weights_mb(model))
    fast = Measured(f"engine decide ({dtype})", weights_mb(model))
    fast_bf16 = Measured("engine decide (bfloat16)", weights_mb(engine_bf16.model))
    rate = bf16_matmul_gflops(RATE_ROWS, model.config.hidden_size, model.config.intermediate_size)

    naive_picks = spread(args.messages, min(args.naive_samples, args.messages))
    new_tokens, contexts, flops, probabilities = [], [], [], []
    naive_prompt_tokens = []
    naive_decide(model, engine.format, windows[0][-1:])  # generate's one-time set-up is no per-message cost
    measured, filled = 0, False
    for window in windows:
        probability, ms, rise = timed(engine.decide, window, key="bench")
        probability_bf16, ms_bf16, rise_bf16 = timed(engine_bf16.decide, window, key="bench")
        state = engine.cache_state("bench")
        # The window fills until the engine trims it for the first time; that is not measured.
        filled = filled or state.first_turn != window[0]
        if not filled:
            continue
        fast.add(ms, rise)
        fast_bf16.add(ms_bf16, rise_bf16)
        # Counted as the engine fed them: at least the last token is always computed.
        new_tokens.append(state.fed_tokens)
        contexts.append(state.cached_tokens)
        flops.append(decision_flops(model, state.fed_tokens, state.cached_tokens))
        probabilities.append((probability, probability_bf16))
        if measured in naive_picks:
            turns = naive_window(engine.format, window, args.window_tokens)
            naive_prompt_tokens.append(len(_encode(engine.format, engine.format.prompt(turns))))
            _, ms, rise = timed(naive_decide, model, engine.format, turns)
            naive.add(ms, rise)
        measured += 1
        if measured == args.messages:
            break
    else:
        raise SystemExit(f"the conversation ran out after {measured} measured messages; ask for fewer")

    rate = max(rate, bf16_matmul_gflops(RATE_ROWS, model.config.hidden_size, model.config.intermediate_size))
    floor_ms = statistics.median(flops) / (rate * 1e9) * 1000
    # A second floor: a forward pass reads every decoder weight once, so no
    # decision is faster than streaming them from memory (in the engine's dtype).
    bandwidth = read_gbytes_per_second()
    read_floor_ms = linear_bytes(model) / (bandwidth * 1e9) * 1000
    read_floor_bf16_ms = linear_bytes(engine_bf16.model) / (bandwidth * 1e9) * 1000
    result = {
        "naive_p50_ms": round(naive.p50, 2),
        "naive_p95_ms": round(naive.p95, 2),
        "engine_p50_ms": round(fast.p50, 2),
        "engine_p95_ms": round(fast.p95, 2),
        "speedup": round(naive.p50 / fast.p50, 1),
        "floor_ms": round(floor_ms, 2),
        "engine_over_floor": round(fast.p50 / floor_ms, 2),
        "engine_new_tokens_p50": statistics.median(new_tokens),
        "engine_context_tokens_p50": statistics.median(contexts),
        "naive_prompt_tokens_p50": statistics.median(naive_prompt_tokens),
        "dtype": dtype,
        "engine_bf16_p50_ms": round(fast_bf16.p50, 2),
        "engine_bf16_p95_ms": round(fast_bf16.p95, 2),
        "speedup_bf16": round(naive.p50 / fast_bf16.p50, 1),
        "engine_bf16_over_floor": round(fast_bf16.p50 / floor_ms, 2),
        # How far bf16 decisions drift from the default dtype's on the same messages.
        "bf16_max_abs_diff": round(max(abs(a - b) for a, b in probabilities), 4),
        "weight_read_floor_ms": round(read_floor_ms, 2),
        "weight_read_floor_bf16_ms": round(read_floor_bf16_ms, 2),
        "read_gbytes_per_second": round(bandwidth, 1),
        "floor_gflop_p50": round(statistics.median(flops) / 1e9, 3),
        "bf16_matmul_gflops": round(rate, 1),
        "rate_shape": f"({RATE_ROWS}x{model.config.hidden_size}) @ "
                      f"({model.config.hidden_size}x{model.config.intermediate_size})",
        "weights_mb": {dtype: round(fast.weights_mb),
                       "bfloat16": round(fast_bf16.weights_mb)},
        "call_rss_rise_mb": {path: None if p.rise_mb is None else round(p.rise_mb)
                             for path, p in (("naive", naive), ("engine", fast), ("engine_bf16", fast_bf16))},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "messages": measured,
        "naive_samples": len(naive.times),
        "window_tokens": args.window_tokens,
        "threads": torch.get_num_threads(),
        "loadavg_1min": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],
        "model": args.model,
        "adapter": engine.info["adapter"],
    }
    print_table(result, [naive, fast, fast_bf16], new_tokens)
    print(json.dumps(result))
    return result


def print_table(result: dict, paths: list[Measured], new_tokens: list[int]) -> None:
    print(f"decision latency: {result['messages']} messages after the {result['window_tokens']}-token window "
          f"filled; model {result['model']}, adapter {result['adapter'] or 'none (bare model)'}; "
          f"{result['threads']} torch threads; load average {result['loadavg_1min'][0]} at start, "
          f"{result['loadavg_1min'][1]} at end")
    print(f"{'path':<28}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'new tok':>9}{'weights MiB':>13}{'call RSS rise MiB':>19}")
    for path in paths:
        tokens = "-" if path.name.startswith("naive") else f"{statistics.median(new_tokens):g}"
        rise = "-" if path.rise_mb is None else f"{path.rise_mb:.0f}"
        print(f"{path.name:<28}{len(path.times):>5}{path.p50:>10.1f}{path.p95:>10.1f}{tokens:>9}"
              f"{path.weights_mb:>13.0f}{rise:>19}")
    print(f"{'floor (arithmetic)':<28}{'':>5}{result['floor_ms']:>10.2f}{'':>10}"
          f"{result['engine_new_tokens_p50']:>9g}")
    print(f"{'floor (weight reads)':<28}{'':>5}{result['weight_read_floor_ms']:>10.2f}"
          f"{'':>10}{'':>9}   ({result['weight_read_floor_bf16_ms']:.2f} ms in bf16)")
    print(f"naive: prompt p50 {result['naive_prompt_tokens_p50']:g} tokens, up to {NAIVE_NEW_TOKENS} generated; "
          f"engine: context p50 {result['engine_context_tokens_p50']:g} tokens")
    print(f"floor: p50 decision {result['floor_gflop_p50']} GFLOP (linear layers, attention, 2 LM-head rows) "
          f"at {result['bf16_matmul_gflops']} GFLOP/s, torch.matmul bf16 {result['rate_shape']}; "
          f"weight reads: the decoder's linear weights at {result['read_gbytes_per_second']} GB/s (a 512 MiB sum)")
    print(f"memory: peak process RSS {result['peak_rss_mb']} MiB with both models loaded; the rise is the most "
          f"the RSS grew during one call (VmHWM reset before each call)")
    print(f"speedup {result['speedup']}x ({result['dtype']} engine), {result['speedup_bf16']}x (bf16 engine); "
          f"engine p50 is {result['engine_over_floor']}x the floor ({result['engine_bf16_over_floor']}x in bf16); "
          f"bf16 speak probabilities differ from {result['dtype']} by up to {result['bf16_max_abs_diff']}")


if __name__ == "__main__":
    main(sys.argv[1:])
