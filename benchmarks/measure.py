"""What the benchmarks measure with: timings, percentiles, memory high-water marks, machine rates, FLOPs.

Shared by ``benchmarks.decision_latency`` and ``benchmarks.gpu_check``; each
function says what it counts and what it leaves out.
"""

from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path

import torch


class Measured:
    """One measured path: its timings and the most one of its calls raised the RSS."""

    def __init__(self, name: str, weights_mb: float):
        self.name, self.weights_mb = name, weights_mb
        self.times: list[float] = []
        self.rise_mb: float | None = 0.0

    def add(self, ms: float, rise_mb: float | None) -> None:
        self.times.append(ms)
        self.rise_mb = None if rise_mb is None or self.rise_mb is None else max(self.rise_mb, rise_mb)

    @property
    def p50(self) -> float:
        return statistics.median(self.times)

    @property
    def p95(self) -> float:
        return percentile(self.times, 0.95)


def timed(call, *args, **kwargs):
    """``call``'s result, its milliseconds, and how far the RSS rose while it ran (None where unknown)."""
    resettable = _reset_rss_peak()
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    result = call(*args, **kwargs)
    ms = (time.perf_counter() - start) * 1000
    return result, ms, (_status_mb("VmHWM") - before) if resettable else None


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
        return True
    except OSError:
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


def spread(total: int, count: int) -> set[int]:
    """``count`` indices spread evenly over ``range(total)``."""
    if count <= 1:
        return {total // 2}
    return {round(i * (total - 1) / (count - 1)) for i in range(count)}


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


def read_gbytes_per_second(megabytes: int = 512, seconds: float = 1.0) -> float:
    """How fast this machine streams memory it has not got in cache, now, in GB/s (best of several sums)."""
    block = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32)
    block.sum()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        block.sum()
        best = min(best, time.perf_counter() - start)
    return block.numel() * 4 / best / 1e9


def decoder_linear_weights(model) -> list[torch.Tensor]:
    """The weights of every nn.Linear except the LM head."""
    head = model.get_output_embeddings()
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head]


def linear_bytes(model) -> int:
    """Bytes of the decoder's linear weights: what every forward pass reads from memory, however few tokens."""
    return sum(w.numel() * w.element_size() for w in decoder_linear_weights(model))


def linear_parameters(model) -> int:
    """Parameters of the decoder's linear weights: what each new token multiplies through."""
    return sum(w.numel() for w in decoder_linear_weights(model))


def decision_flops(model, new_tokens: int, context: int) -> float:
    """FLOPs of one decision feeding ``new_tokens`` after ``context - new_tokens`` cached ones."""
    config = model.config
    attention_width = config.num_attention_heads * getattr(
        config, "head_dim", config.hidden_size // config.num_attention_heads)
    cached = context - new_tokens
    # New token i attends to cached + i + 1 positions: QK^T and AV, 2 FLOPs per multiply-add each.
    attended = sum(cached + i + 1 for i in range(new_tokens))
    return (2 * linear_parameters(model) * new_tokens
            + 4 * config.num_hidden_layers * attention_width * attended
            + 2 * 2 * config.hidden_size)  # the two branch rows of the LM head


def weights_mb(model) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
