"""Served against in-process decisions: latency and agreement on the same conversation, in one run.

    .venv/bin/python -m benchmarks.served_latency                       # the test server, started here
    .venv/bin/python -m benchmarks.served_latency --engine-url http://localhost:8000/v1 --engine-model chimein

The in-process engine is loaded as the bot loads it (``models.loading.load_engine``,
the shipped adapter by default). Without ``--engine-url`` the OpenAI-compatible
test server (tests/fakes/model_server.py) is started in this process on the
same loaded model, so the served path times the whole protocol (render,
tokenize, HTTP through the ``openai`` client, the server's forward pass with
its prefix cache, JSON) on the same CPU; with ``--engine-url`` it times a real
server (vLLM, llama.cpp's server) that hosts the same adapter. One multi-user
conversation (``--messages`` people's messages, the window sliding through
``--window-tokens``) is decided message by message, the two paths interleaved
so a busy machine slows both alike. It prints a table (p50/p95 per path, the
largest difference in speak probability) and, first, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.served_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine-url", default="", help="a real server's base URL; default: the test server here")
    parser.add_argument("--engine-model", default="chimein", help="the model name on that server")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--adapter", default="auto", help="'auto' (the shipped one), 'none' or a folder")
    parser.add_argument("--messages", type=int, default=40, help="people's messages decided (default 40)")
    parser.add_argument("--window-tokens", type=int, default=1024)
    args = parser.parse_args(argv)

    from models.library_logs import quiet_libraries
    from models.loading import load_engine
    from models.served import ServedEngine, make_client
    from tests.conftest import long_conversation

    quiet_libraries()
    local = load_engine("embedded", args.adapter, window_tokens=args.window_tokens)
    server = None
    url = args.engine_url
    if not url:
        from tests.fakes.model_server import ModelServer

        server = ModelServer(local.model, local.tokenizer, args.engine_model).start()
        url = server.base_url
    served = ServedEngine(make_client(url, args.api_key), args.engine_model, local.tokenizer,
                          window_tokens=args.window_tokens)
    conversation = long_conversation(args.messages)
    local_ms, served_ms, differences = [], [], []
    try:
        for end in range(1, len(conversation) + 1):
            window = conversation[:end]
            if window[-1].role != "user":
                continue
            started = time.perf_counter()
            p_local = local.decide(window, key="bench")
            middle = time.perf_counter()
            p_served = served.decide(window, key="bench")
            local_ms.append((middle - started) * 1000)
            served_ms.append((time.perf_counter() - middle) * 1000)
            differences.append(abs(p_local - p_served))
    finally:
        if server is not None:
            server.stop()

    result = {
        "benchmark": "served_latency", "server": "test server (this process)" if server else url,
        "model": "embedded", "adapter": local.describe().get("adapter"), "window_tokens": args.window_tokens,
        "decisions": len(local_ms),
        "in_process_p50_ms": round(statistics.median(local_ms), 1),
        "in_process_p95_ms": round(percentile(local_ms, 0.95), 1),
        "served_p50_ms": round(statistics.median(served_ms), 1),
        "served_p95_ms": round(percentile(served_ms, 0.95), 1),
        "max_abs_p_difference": float(f"{max(differences):.2e}"),
    }
    print(json.dumps(result))
    print(f"decisions on {result['decisions']} messages, window {args.window_tokens} tokens, "
          f"served by {result['server']}")
    print(f"{'path':<14}{'p50 ms':>10}{'p95 ms':>10}")
    print(f"{'in-process':<14}{result['in_process_p50_ms']:>10.1f}{result['in_process_p95_ms']:>10.1f}")
    print(f"{'served':<14}{result['served_p50_ms']:>10.1f}{result['served_p95_ms']:>10.1f}")
    print(f"largest |p(served) - p(in-process)|: {result['max_abs_p_difference']:.1e}")
    return result


if __name__ == "__main__":
    main()
