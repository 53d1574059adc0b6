"""Which engine decides and which one replies, chosen from the settings; one place for every front end.

``python -m bot``, ``python -m bot chat`` and ``python -m bot check`` all build
their engine here (see docs/serving.md):

* nothing set: the in-process engine (the embedded model and the shipped adapter);
* ``CHIMEIN_ENGINE_URL`` + ``CHIMEIN_ENGINE_MODEL``: decisions and replies from a
  server that hosts the finetuned format (vLLM with the adapter, llama.cpp's
  server); only the tokenizer is loaded here, to render the window;
* ``CHIMEIN_REPLY_URL`` + ``CHIMEIN_REPLY_MODEL``: replies from a general chat
  model; decisions stay with the finetuned model, in-process or served.
"""

from __future__ import annotations


def build_engine(settings):
    """The engine the settings ask for; raises ``models.loading.ModelLoadError`` when it cannot be made."""
    gate = _finetuned_engine(settings)
    if not settings.reply_url:
        return gate
    from models.served import ChatReplies, SplitEngine

    return SplitEngine(gate, ChatReplies(_client(settings, settings.reply_url), settings.reply_model))


def served_servers(settings) -> list[tuple[str, str, str]]:
    """(setting, URL, model) of every server the settings name, for ``python -m bot check``."""
    servers = []
    if settings.engine_url:
        servers.append(("CHIMEIN_ENGINE_URL", settings.engine_url, settings.engine_model))
    if settings.reply_url:
        servers.append(("CHIMEIN_REPLY_URL", settings.reply_url, settings.reply_model))
    return servers


def check_served(settings) -> list[tuple[bool, str]]:
    """Contact each configured server (``/v1/models``): (ok, one line naming the URL) per server."""
    from models.served import ServedError, check_server

    results = []
    for setting, url, model in served_servers(settings):
        try:
            results.append((True, f"{setting}: {check_server(url, model, _api_key(settings), _timeout(settings))}"))
        except ServedError as error:
            results.append((False, f"{setting}: {error}"))
    return results


def _finetuned_engine(settings):
    from models.loading import load_engine

    if not settings.engine_url:
        return load_engine(settings.model, settings.adapter_arg, window_tokens=settings.window_tokens,
                           quantize=settings.quantize)
    from models.loading import ModelLoadError, load_tokenizer, resolve_adapter, resolve_model
    from models.served import ServedEngine
    from models.template import TemplateError
    from models.threshold import adapter_threshold

    # The server holds the weights; the window is rendered here, with the tokenizer
    # the adapter was trained with (it carries one) or the base model's.
    adapter = resolve_adapter(settings.adapter_arg)
    has_own_tokenizer = adapter is not None and (adapter / "tokenizer_config.json").exists()
    source = str(adapter) if has_own_tokenizer else resolve_model(settings.model)
    try:
        tokenizer = load_tokenizer(source)
        return ServedEngine(_client(settings, settings.engine_url), settings.engine_model, tokenizer,
                            window_tokens=settings.window_tokens,
                            info={"adapter": str(adapter) if adapter else None,
                                  "speak_threshold": adapter_threshold(adapter)})
    except (OSError, ValueError, TemplateError) as error:
        raise ModelLoadError(f"cannot load the tokenizer for {settings.engine_url} from {source}: {error}") from error


def _client(settings, url: str):
    from models.served import make_client

    return make_client(url, _api_key(settings), _timeout(settings))


def _api_key(settings) -> str | None:
    return settings.api_key.get_secret_value() if settings.api_key is not None else None


def _timeout(settings) -> float:
    return settings.request_timeout_seconds
