"""The GPU check: a clear skip without CUDA, and its whole code path on a tiny model on the CPU.

No GPU is lent here, so the 7B run itself is not tested; the dry run goes through
the same functions (random checkpoint, the project's loader, finetune and engine)
with a tiny model of the same architecture, unquantized.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from benchmarks import gpu_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="the skip is for machines without CUDA")
def test_without_cuda_it_skips_in_one_line_and_exits_0():
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0
    assert done.stdout.strip().splitlines() == [gpu_check.SKIP_MESSAGE]


@pytest.mark.slow
def test_tiny_dry_run_on_the_cpu_prints_a_table_then_one_json_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the trainer may write beside its output folder
    assert gpu_check.main(["--device", "cpu", "--tiny", "--steps", "1", "--messages", "12", "--replies", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    # The trainer prints its own log lines (a dict per logging step) before the table.
    table = [line for line in lines if not line.startswith("{'")]
    assert table[0].startswith("gpu check on cpu: tiny")
    assert result["decisions"] == 12 and result["train_steps"] == 1
    assert result["cache_within_tolerance"], result["cache_max_abs_diff"]
    assert result["train_tokens_per_second"] > 0 and result["reply_tokens_per_second"] > 0
    assert result["lora_r"] == 64 and result["gradient_checkpointing"] is True
    assert result["engine_quantization"] is None and result["train_peak_gb"] is None
