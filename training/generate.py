"""Generate synthetic group chats with a large model behind an OpenAI-compatible endpoint.

This reproduces the seed system's data generation (Mixtral-8x7B-Instruct wrote its
conversations). It works with any server that answers ``POST {base_url}/chat/completions``:
vLLM (``http://localhost:8000/v1``), llama.cpp's llama-server (``http://localhost:8080/v1``),
Ollama (``http://localhost:11434/v1``) or a hosted API::

    python -m training.generate --out data/generated.jsonl --count 500 \\
        --base-url http://localhost:8000/v1 --model mistralai/Mixtral-8x7B-Instruct-v0.1

The base URL, model and API key can also come from CHIMEIN_GEN_BASE_URL, CHIMEIN_GEN_MODEL
and CHIMEIN_GEN_API_KEY. Flags take precedence. ``--count`` is the number of conversations
the file should hold. Lines already in ``--out`` count towards it, so running the command
again after an interruption continues from where it stopped. The JSON array in each answer
goes through the same checks as the shipped data (``training.dataset``). A bad answer is
requested again up to ``--max-retries`` times and then skipped with a warning.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import socket
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

from training.dataset import validate_conversation
from training.prompts import draw_spec, parse_answer, prompt_messages

DEFAULT_BASE_URL = "http://localhost:8000/v1"  # vLLM's default
DEFAULT_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"  # the seed's generator
# A 20-message conversation from a 47B model on a busy server can take minutes.
REQUEST_TIMEOUT_SECONDS = 600.0
# The pause after a server-side failure (HTTP 429/5xx, a timeout). A bad answer is
# asked again at once.
RETRY_PAUSE_SECONDS = 2.0
TEMPERATURE = 1.0  # the variety comes from the prompt and from sampling
MAX_TOKENS = 2048


class EndpointError(RuntimeError):
    """The endpoint cannot serve any request (refused, unauthorised, wrong URL): stop."""


class _RetryableError(Exception):
    """A request that failed in a way the next attempt may not (overload, timeout)."""


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str | None = None
    timeout_seconds: float = REQUEST_TIMEOUT_SECONDS

    @property
    def url(self) -> str:
        return self.base_url + "/chat/completions"


def check_base_url(base_url: str) -> str:
    """The base URL without a trailing slash or a pasted ``/chat/completions``."""
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise EndpointError(
            f"bad base URL {base_url!r}: expected something like http://localhost:8000/v1"
        )
    return base_url.rstrip("/").removesuffix("/chat/completions")


def _error_detail(error: urllib.error.HTTPError) -> str:
    body = error.read(2000).decode("utf-8", "replace")
    try:
        message = json.loads(body)["error"]
        return str(message.get("message", message) if isinstance(message, dict) else message)
    except (ValueError, KeyError, TypeError):
        return body.strip()[:200] or error.reason


def _http_error(endpoint: Endpoint, error: urllib.error.HTTPError) -> Exception:
    detail = f"HTTP {error.code}: {_error_detail(error)}"
    if error.code in (401, 403):
        return EndpointError(
            f"{endpoint.url} refused the request ({detail}). "
            "Pass the right key with --api-key or CHIMEIN_GEN_API_KEY."
        )
    if error.code == 404:
        return EndpointError(
            f"{endpoint.url} answered {detail}. Check --base-url (it usually ends in /v1) "
            f"and --model ({endpoint.model!r})."
        )
    if error.code in (400, 405, 413, 422):  # the request itself is wrong: every one would fail
        return EndpointError(f"{endpoint.url} rejected the request ({detail})")
    return _RetryableError(detail)


def chat_completion(endpoint: Endpoint, messages: list[dict]) -> str:
    """One OpenAI-style chat completion; returns the answer's text."""
    body = {"model": endpoint.model, "messages": messages,
            "temperature": TEMPERATURE, "max_tokens": MAX_TOKENS}
    headers = {"Content-Type": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    request = urllib.request.Request(
        endpoint.url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=endpoint.timeout_seconds) as response:
            payload = response.read()
    except urllib.error.HTTPError as error:
        raise _http_error(endpoint, error) from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, ConnectionRefusedError):
            raise EndpointError(
                f"cannot connect to {endpoint.url}: connection refused (is the server running?)"
            ) from None
        if isinstance(error.reason, socket.gaierror):
            raise EndpointError(f"cannot resolve the host of {endpoint.base_url}") from None
        raise _RetryableError(f"network error: {error.reason}") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as error:
        raise _RetryableError(f"network error: {error!r}") from None
    try:
        content = json.loads(payload)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ValueError("the endpoint's reply is not a chat completion") from None
    if not isinstance(content, str):
        raise ValueError("the endpoint's reply has no text")
    return content


def count_existing(path: Path) -> int:
    """Count the valid conversations already in ``path``, so a resumed run only makes the rest.

    A last line without its newline is what a killed run leaves. If it is valid, the newline
    is added. If not, the line is cut off. Other invalid lines are reported and not counted.
    """
    if not path.exists():
        return 0
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        last_start = data.rfind(b"\n") + 1
        try:
            validate_conversation(json.loads(data[last_start:]))
            with open(path, "ab") as file:
                file.write(b"\n")
            data += b"\n"
        except ValueError:
            line = data.count(b"\n") + 1
            tqdm.write(f"warning: {path}:{line}: removed an unfinished line", file=sys.stderr)
            with open(path, "r+b") as file:
                file.truncate(last_start)
            data = data[:last_start]
    valid = 0
    for line, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            validate_conversation(json.loads(raw))
            valid += 1
        except ValueError as error:  # also JSON and UTF-8 decoding errors
            tqdm.write(f"warning: {path}:{line}: {error}; not counted", file=sys.stderr)
    return valid


def _generate_one(endpoint: Endpoint, rng: random.Random, max_retries: int,
                  stop: threading.Event) -> tuple[list[dict] | None, str]:
    messages = prompt_messages(draw_spec(rng))
    reason = "stopped"
    for attempt in range(1 + max_retries):
        if stop.is_set():
            break
        try:
            return parse_answer(chat_completion(endpoint, messages)), ""
        except _RetryableError as error:
            reason = str(error)
            if attempt < max_retries:
                stop.wait(RETRY_PAUSE_SECONDS)
        except ValueError as error:
            reason = str(error)
    return None, reason


def _worker(jobs: queue.Queue, results: queue.Queue, endpoint: Endpoint, max_retries: int,
            seed: int | None, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            index = jobs.get_nowait()
        except queue.Empty:
            return
        # Conversation k always gets the same request for a given seed, so a resumed
        # run asks for the conversations that the interrupted run did not write.
        rng = random.Random(f"{seed}:{index}") if seed is not None else random.Random()
        try:
            conversation, reason = _generate_one(endpoint, rng, max_retries, stop)
        except BaseException as error:  # the main thread decides; a fatal one stops everyone
            stop.set()
            results.put((index, None, error))
            return
        results.put((index, conversation, reason))


@dataclass(frozen=True)
class RunResult:
    existing: int  # valid conversations already in the file
    written: int
    failed: int


def generate(out: str | Path, count: int, endpoint: Endpoint, *, concurrency: int = 4,
             max_retries: int = 3, seed: int | None = None, progress: bool = True) -> RunResult:
    """Append conversations to ``out`` until it holds ``count``; ``concurrency`` at a time."""
    out = Path(out)
    existing = count_existing(out)
    remaining = count - existing
    if remaining <= 0:
        return RunResult(existing, 0, 0)
    jobs: queue.Queue = queue.Queue()
    for index in range(existing, count):
        jobs.put(index)
    results: queue.Queue = queue.Queue()
    stop = threading.Event()
    # Daemon threads: on Ctrl-C the process exits without waiting out a slow request.
    workers = [
        threading.Thread(target=_worker, daemon=True,
                         args=(jobs, results, endpoint, max_retries, seed, stop))
        for _ in range(min(concurrency, remaining))
    ]
    written = failed = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with (open(out, "a", encoding="utf-8") as file,
          tqdm(total=count, initial=existing, unit="conv", disable=not progress) as bar):
        for worker in workers:
            worker.start()
        try:
            for _ in range(remaining):
                index, conversation, reason = results.get()
                if isinstance(reason, BaseException):
                    raise reason
                if conversation is None:
                    failed += 1
                    tqdm.write(f"warning: conversation {index} skipped after {1 + max_retries} "
                               f"attempts: {reason}", file=sys.stderr)
                else:
                    # One write per line, flushed: an interruption loses at most this line.
                    file.write(json.dumps(conversation, ensure_ascii=False) + "\n")
                    file.flush()
                    written += 1
                    bar.update(1)
                bar.set_postfix(failed=failed, refresh=False)
        finally:
            stop.set()
    return RunResult(existing, written, failed)


def _at_least(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value
    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.generate",
        description="Generate synthetic group chats (JSONL, the data format) with a large model "
        "behind an OpenAI-compatible chat completions endpoint.",
    )
    parser.add_argument("--out", required=True, type=Path, help="JSONL file to append to")
    parser.add_argument("--count", required=True, type=_at_least(1),
                        help="conversations the file should hold, counting those already in it")
    parser.add_argument("--base-url", help="endpoint base URL, e.g. http://localhost:8000/v1 "
                        f"(env CHIMEIN_GEN_BASE_URL; default {DEFAULT_BASE_URL})")
    parser.add_argument("--model", help="model name the server knows "
                        f"(env CHIMEIN_GEN_MODEL; default {DEFAULT_MODEL})")
    parser.add_argument("--api-key", help="bearer token, if the server wants one "
                        "(env CHIMEIN_GEN_API_KEY)")
    parser.add_argument("--concurrency", type=_at_least(1), default=4,
                        help="requests in flight at once (default 4)")
    parser.add_argument("--max-retries", type=_at_least(0), default=3,
                        help="new attempts after an invalid answer before skipping (default 3)")
    parser.add_argument("--seed", type=int, help="repeatable topics, names and cases")
    return parser.parse_args(argv)


def endpoint_from(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Endpoint:
    """Flags first, then the environment, then the defaults."""
    base_url = args.base_url or environ.get("CHIMEIN_GEN_BASE_URL") or DEFAULT_BASE_URL
    model = args.model or environ.get("CHIMEIN_GEN_MODEL") or DEFAULT_MODEL
    api_key = args.api_key or environ.get("CHIMEIN_GEN_API_KEY") or None
    return Endpoint(check_base_url(base_url), model, api_key)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        endpoint = endpoint_from(args)
        result = generate(args.out, args.count, endpoint, concurrency=args.concurrency,
                          max_retries=args.max_retries, seed=args.seed)
    except EndpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: what was written to {args.out} is kept; "
              "run the same command to continue", file=sys.stderr)
        return 130
    total = result.existing + result.written
    print(f"{args.out}: {total} of {args.count} conversations "
          f"({result.existing} already there, {result.written} new, {result.failed} failed)")
    if total < args.count:
        print("some answers stayed invalid; run the same command again to make the rest",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
