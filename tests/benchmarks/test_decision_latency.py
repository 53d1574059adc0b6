"""The latency benchmark's contract: a table, then one JSON line with the numbers the issue asks for.

A short run on the real embedded model (a small window fills fast); the
numbers themselves are measured by running the benchmark, not here.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import decision_latency, measure

pytestmark = pytest.mark.slow


def test_short_run_prints_a_table_then_one_json_line(capsys):
    result = decision_latency.main(["--messages", "4", "--naive-samples", "2", "--window-tokens", "256",
                                    "--adapter", "none"])
    lines = capsys.readouterr().out.strip().splitlines()

    assert json.loads(lines[-1]) == result
    assert lines[0].startswith("decision latency: 4 messages after the 256-token window filled")
    assert any(line.startswith("engine decide (float32)") for line in lines)
    for key in ("naive_p50_ms", "engine_p50_ms", "speedup", "floor_ms", "weight_read_floor_ms",
                "engine_bf16_p50_ms", "peak_rss_mb"):
        assert result[key] > 0, key
    assert result["messages"] == 4 and result["naive_samples"] == 2
    # speedup is the ratio of the unrounded medians, rounded to one decimal.
    assert result["speedup"] == pytest.approx(result["naive_p50_ms"] / result["engine_p50_ms"], abs=0.051)
    assert result["adapter"] is None and result["dtype"] == "float32"
    # The engine only ever feeds what is new: a handful of tokens, not the whole window.
    assert result["engine_new_tokens_p50"] < result["engine_context_tokens_p50"] <= 256


def test_decision_flops_count_new_tokens_and_attention(loaded):
    model, config = loaded.model, loaded.model.config
    one = measure.decision_flops(model, new_tokens=1, context=100)
    two = measure.decision_flops(model, new_tokens=2, context=101)
    linear = 2 * measure.linear_parameters(model)
    width = config.num_attention_heads * config.head_dim if hasattr(config, "head_dim") else config.hidden_size
    # The second new token adds its linear layers and attends to 101 positions.
    assert two - one == linear + 4 * config.num_hidden_layers * width * 101


def test_bad_counts_are_refused():
    with pytest.raises(SystemExit, match="at least 1"):
        decision_latency.main(["--messages", "0"])
