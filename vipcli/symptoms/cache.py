"""On-disk cache of LLM answers, so re-running the same request costs nothing.

Location: `<VIP_CACHE_DIR>/llm` when VIP_CACHE_DIR is set, else `platformdirs.user_cache_dir("vip")/llm`.
Key: sha256 of (base URL without its user name, password and query values, model, messages with each
image replaced by its sha256, temperature). Entries hold the answer text, whether the server cut it at
its output-token limit, and the model name only: never the API key, and no credential is hashed into a file name where a weak one could be guessed back.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path


def cache_dir() -> Path:
    """The folder holding cached LLM answers (not created here); VipError for a cache folder every user
    can write (`check_cache_root`)."""
    from vipcli.cache_admin import default_root

    return default_root() / "llm"


def _digest_images(value):
    """A copy of `value` with every data: URL replaced by the sha256 of its bytes."""
    if isinstance(value, dict):
        return {k: _digest_images(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_digest_images(v) for v in value]
    if isinstance(value, str) and value.startswith("data:"):
        return "sha256:" + hashlib.sha256(value.encode("ascii", "replace")).hexdigest()
    return value


def cache_key(base_url: str, model: str, messages: list[dict], temperature: float | None) -> str:
    """The cache key of one request.

    Args:
        base_url: endpoint root (hashed with its credentials and query values masked, never stored).
        model: model name.
        messages: chat messages; images count by the digest of their data: URL.
        temperature: sampling temperature (None: none was sent, the model's own default).

    Returns:
        A 64-character hex digest.
    """
    from vipcli.symptoms.llm import mask_url

    document = [mask_url(base_url).rstrip("/"), model, _digest_images(messages),
                None if temperature is None else float(temperature)]
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode("utf-8")).hexdigest()


def read_cached(key: str) -> tuple[str, bool] | None:
    """The cached (answer text, cut at the output limit) for `key`, or None (missing or unreadable entries are misses)."""
    try:
        entry = json.loads((cache_dir() / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    answer = entry.get("answer") if isinstance(entry, dict) else None
    if not isinstance(answer, str):
        return None
    truncated = entry.get("truncated") is True
    recorded = entry.get("sha256")  # absent in an entry of an earlier vip: read as before
    if recorded is not None and recorded != answer_digest(answer, truncated):  # changed on disk since: ask again
        return None
    return answer, truncated


def answer_digest(answer: str, truncated: bool) -> str:
    """The sha256 an entry records of its answer and its `truncated` mark, checked when it is read: a
    flipped bit in a cached answer would otherwise change a symptom's words without a sign."""
    return hashlib.sha256(json.dumps([answer, truncated]).encode("utf-8")).hexdigest()


def write_cached(key: str, answer: str, model: str, truncated: bool = False) -> OSError | None:
    """Store `answer` under `key` atomically; returns None when stored, or why nothing was stored (the folder is
    read-only or full), for the caller to say so.

    Args:
        key: from `cache_key`.
        answer: the assistant text.
        model: the model name, kept for people browsing the cache.
        truncated: the server stopped the answer at its output-token limit (read back with it).
    """
    folder = cache_dir()
    entry = {"answer": answer, "model": model, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "sha256": answer_digest(answer, truncated)}
    if truncated:
        entry["truncated"] = True
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / f"{key}.json", json.dumps(entry, indent=1))
    except OSError as error:
        return error
    return None


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file in the same folder and os.replace: never half-written."""
    from vipcli.atomic import write_atomic as write

    write(path, text)
