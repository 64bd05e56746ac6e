"""A small chat-completions client for any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp).

The API key is read from an environment variable and only ever put in the Authorization header:
never in messages, cache files, packs or error text.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from vipcli.errors import UsageError, VipError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"


class LLMError(VipError):
    """The endpoint itself failed (unreachable, refused the key, rate-limited, broken answer)."""


@dataclass(frozen=True)
class LLMConfig:
    """Where and how to ask the LLM."""

    base_url: str = DEFAULT_BASE_URL  # OpenAI-compatible root, e.g. http://localhost:8000/v1
    model: str = DEFAULT_MODEL  # model name as the server knows it
    api_key_env: str = DEFAULT_KEY_ENV  # environment variable holding the key ("" or unset: no key)
    timeout_s: float = 120.0  # per-request limit, connect + read
    retries: int = 4  # extra tries after a 429, 5xx or timeout
    backoff_s: float = 1.0  # first wait before a retry; doubled each time
    max_wait_s: float = 60.0  # longest single wait, also caps Retry-After
    temperature: float = 0.0  # sampling temperature sent with every request


def endpoint_host(base_url: str) -> str:
    """The host (and port, if any) of `base_url`: no scheme, credentials, path or query.

    Args:
        base_url: the endpoint root URL.

    Returns:
        e.g. "api.openai.com" or "localhost:11434".
    """
    parts = urlsplit(base_url)
    host = parts.hostname or base_url
    return f"{host}:{parts.port}" if parts.port else host


def check_base_url(base_url: str) -> str:
    """Return `base_url` without a trailing slash, or raise UsageError if it is not http(s)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"--base-url {base_url!r} is not an http(s) URL",
            "e.g. https://api.openai.com/v1 or http://localhost:11434/v1",
        )
    return base_url.rstrip("/")


def read_api_key(config: LLMConfig) -> str | None:
    """The key from `config.api_key_env`, or None when unset (local servers need none).

    Raises:
        VipError: the default OpenAI endpoint is used without a key.
    """
    key = os.environ.get(config.api_key_env, "").strip() if config.api_key_env else ""
    if key:
        return key
    if endpoint_host(config.base_url) == "api.openai.com":
        raise VipError(
            f"no API key for api.openai.com: ${config.api_key_env or DEFAULT_KEY_ENV} is not set",
            f"export {config.api_key_env or DEFAULT_KEY_ENV}=... or point --base-url at a local server",
        )
    return None


def chat(config: LLMConfig, messages: list[dict]) -> str:
    """Send one chat-completions request, retrying 429/5xx/timeouts with exponential backoff.

    Args:
        config: endpoint, model, key variable, timeout and retry policy.
        messages: OpenAI-format messages (text, or text + image_url parts).

    Returns:
        The assistant message text (may be empty; the caller decides what that means).

    Raises:
        LLMError: one clear line per failure kind (unreachable, key rejected, wrong URL/model,
            rate-limited, server error, timeout, not a chat-completions answer).
    """
    import httpx

    base_url = check_base_url(config.base_url)
    key = read_api_key(config)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": config.model, "messages": messages, "temperature": config.temperature}
    with httpx.Client(timeout=config.timeout_s, headers=headers) as client:
        for attempt in range(config.retries + 1):
            last = attempt == config.retries
            response = _post(client, f"{base_url}/chat/completions", body, config, last)
            if response is None:
                time.sleep(_backoff(config, attempt, None))
                continue
            if response.status_code == 429 or response.status_code >= 500:
                if last:
                    raise _status_error(response, config, key)
                time.sleep(_backoff(config, attempt, response.headers.get("retry-after")))
                continue
            if response.status_code >= 400:
                raise _status_error(response, config, key)
            return _answer_text(response, config)
    raise AssertionError("unreachable")  # pragma: no cover


def _post(client, url: str, body: dict, config: LLMConfig, last: bool):
    """POST once; None means "timed out, retry"; connection failures raise at once."""
    import httpx

    host = endpoint_host(config.base_url)
    try:
        return client.post(url, json=body)
    except httpx.TimeoutException:
        if not last:
            return None
        raise LLMError(
            f"LLM endpoint {host} did not answer within {config.timeout_s:g} s ({_tries(config)})",
            "raise --timeout (local models can be slow) or try again later",
        ) from None
    except httpx.ConnectError as error:
        reason = "name not found" if "name" in str(error).lower() else "connection refused"
        raise LLMError(
            f"cannot reach LLM endpoint {host}: {reason}",
            "check --base-url and your network, or that the local server is running",
        ) from None
    except httpx.HTTPError as error:
        raise LLMError(f"request to LLM endpoint {host} failed: {type(error).__name__}", "check --base-url") from None


def _backoff(config: LLMConfig, attempt: int, retry_after: str | None) -> float:
    """Seconds to wait before retry `attempt + 1`: Retry-After if given, else base * 2**attempt."""
    wait = _parse_retry_after(retry_after)
    if wait is None:
        wait = config.backoff_s * (2**attempt)
    return max(0.0, min(wait, config.max_wait_s))


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (number or HTTP date), or None."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def _tries(config: LLMConfig) -> str:
    count = config.retries + 1
    return "1 try" if count == 1 else f"{count} tries"


def _server_detail(response, key: str | None) -> str:
    """The server's own error message, shortened, with the key redacted."""
    try:
        data = response.json()
        detail = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(detail, dict):
            detail = detail.get("message") or detail
    except ValueError:
        detail = response.text
    text = " ".join(str(detail).split())[:200]
    return text.replace(key, "***") if key else text


def _status_error(response, config: LLMConfig, key: str | None) -> LLMError:
    """One clear error for an HTTP failure status."""
    host, code = endpoint_host(config.base_url), response.status_code
    var = f"${config.api_key_env}" if config.api_key_env else "the key variable"
    if code in (401, 403):
        if not key:
            return LLMError(
                f"LLM endpoint {host} needs an API key (answered HTTP {code}) but {var} is not set",
                f"export {var[1:]}=...",
            )
        return LLMError(
            f"LLM endpoint {host} rejected the API key in {var} with HTTP {code}",
            f"check that {var} holds a valid key for {host}",
        )
    detail = _server_detail(response, key)
    if code == 404:
        return LLMError(
            f"LLM endpoint {host} answered 404 for /chat/completions with model {config.model!r}: {detail}",
            "check --base-url (usually ends in /v1) and --model (a name the server lists)",
        )
    if code == 429:
        return LLMError(
            f"LLM endpoint {host} kept rate-limiting (HTTP 429) after {_tries(config)}: {detail}",
            "wait a minute and rerun (answers already received are cached) or check your quota",
        )
    if code >= 500:
        return LLMError(
            f"LLM endpoint {host} failed with HTTP {code} after {_tries(config)}: {detail}",
            "the server is having trouble; try again later",
        )
    return LLMError(
        f"LLM endpoint {host} refused the request (HTTP {code}): {detail}",
        "with --images the --model must accept images (e.g. gpt-4o, llava, qwen2-vl)",
    )


def _answer_text(response, config: LLMConfig) -> str:
    """The assistant text of a chat-completions response (string or list of text parts)."""
    host = endpoint_host(config.base_url)
    try:
        choice = response.json()["choices"][0]
        message = choice["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise LLMError(
            f"LLM endpoint {host} did not return a chat-completions answer",
            "is --base-url an OpenAI-compatible root such as http://localhost:8000/v1?",
        ) from None
    if message.get("refusal"):
        return f"I'm sorry: {message['refusal']}"
    content = message.get("content") or ""
    if isinstance(content, list):
        content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)
