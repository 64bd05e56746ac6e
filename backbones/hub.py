"""Loading weights from the Hugging Face hub: fast, quiet, and one clear line when it cannot work.

Without network, huggingface_hub retries each request with backoff (30 s and more) before giving
up, and open_clip logs the failure on the root logger (`ERROR:root:...`). `hub_access()` checks
once, in at most `PROBE_TIMEOUT_S`, whether the hub can be reached; if not, the load runs in the
library's offline mode, so cached weights load and missing ones fail at once. `quiet_libraries()`
keeps library log records off the user's screen during a load.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
import threading
import warnings
from pathlib import Path
from urllib.parse import urlparse

from vipcli.errors import VipError
from vipcli.plugins import describe_exception

PROBE_TIMEOUT_S = 2.0
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def hub_endpoint() -> str:
    """The hub URL huggingface_hub uses (honours HF_ENDPOINT)."""
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except Exception:  # noqa: BLE001 - a very old huggingface_hub: the public hub
        return "https://huggingface.co"


def hub_cache_dir() -> str:
    """Where downloaded weights are cached (honours HF_HOME / HF_HUB_CACHE)."""
    try:
        from huggingface_hub import constants

        return constants.HF_HUB_CACHE
    except Exception:  # noqa: BLE001
        return os.path.expanduser("~/.cache/huggingface/hub")


def _offline_now() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or flag.strip().lower() in ("1", "on", "yes", "true")


_PROBED: dict[str, str | None] = {}  # endpoint -> reason, probed once per process


def hub_unreachable_reason(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the hub cannot be reached right now (None when it can, or when a proxy decides).

    Resolves the hub's host and opens a TCP connection to it, in a background thread so that a
    hanging DNS lookup costs at most `timeout` seconds; the answer is remembered for the process.
    """
    if _offline_now():
        return "offline mode is on (HF_HUB_OFFLINE)"
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return None  # only the proxy knows; let the library try
    endpoint = hub_endpoint()
    if endpoint not in _PROBED:
        _PROBED[endpoint] = _probe(endpoint, timeout)
    return _PROBED[endpoint]


def _probe(endpoint: str, timeout: float) -> str | None:
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    outcome: list[str | None] = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"{host} cannot be reached ({error.strerror or error})")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return outcome[0] if outcome else f"{host} did not answer within {timeout:.0f} s"


@contextlib.contextmanager
def offline_mode():
    """Run huggingface_hub (and transformers, open_clip through it) from the local cache only."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


@contextlib.contextmanager
def hub_access():
    """Yield None when the hub is reachable; else the reason, with offline mode on for the block."""
    reason = hub_unreachable_reason()
    if reason is None:
        yield None
        return
    with offline_mode():
        yield reason


@contextlib.contextmanager
def quiet_libraries(progress: bool = False):
    """Keep library log records and warnings off the screen while a model loads.

    Args:
        progress: keep the libraries' progress bars (worth it while weights may download);
            off, transformers' "Loading weights" bar is hidden too.

    open_clip reports failures with `logging.error` on the root logger, which would also install a
    stderr handler for good (`logging.basicConfig`); transformers logs on its own handler. Both are
    silenced for the block, and the root logger gets a no-op handler so nothing is configured behind
    the user's back. The failure itself reaches the user as one `VipError` line.
    """
    root = logging.getLogger()
    saved_handlers = root.handlers[:]
    root.handlers = [logging.NullHandler()]
    logging.disable(logging.CRITICAL)
    bars = sys.modules.get("transformers.utils.logging")  # only if transformers is already imported
    bars_were_on = bars is not None and bars.is_progress_bar_enabled()
    if bars_were_on and not progress:
        bars.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        root.handlers = saved_handlers
        if bars_were_on and not progress:
            bars.enable_progress_bar()


def transformers_torch_error() -> VipError | None:
    """The error for a transformers release that refuses the installed torch (None when they agree).

    Such a transformers (5.x beside torch < 2.6, say) imports, then fails every model load with a
    message about PyTorch not being found, which would read as a weights problem.
    """
    if "transformers" not in sys.modules:
        return None
    transformers = sys.modules["transformers"]
    try:
        from transformers.utils import is_torch_available

        usable = is_torch_available()
    except Exception:  # noqa: BLE001 - an unusual transformers: let the load itself report
        return None
    if usable:
        return None
    import torch

    return VipError(
        f"transformers {transformers.__version__} cannot use the installed torch {torch.__version__} "
        "(it needs a newer PyTorch)",
        "upgrade PyTorch (pip install -U torch torchvision), or keep this torch with an older transformers "
        "(pip install 'transformers<5')",
    )


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")  # weight files, as libraries save them
MAX_DETAIL = 300  # characters of a library's message shown (a state-dict mismatch lists every key)


def meant_as_path(value: str, suffixes: tuple[str, ...]) -> bool:
    """Whether an option's value is written as a local path, not a hub id or tag: absolute, ./ ../ ~, or ending in
    one of `suffixes` (lower case)."""
    return (value.startswith(("/", "./", "../", "~", ".\\")) or Path(value).is_absolute()
            or value.lower().endswith(suffixes))


def check_weights_path(pretrained: str | None, what: str) -> None:
    """UsageError for a --pretrained that is meant as a local path (absolute, ./ ../ ~, or a weights
    file suffix) but does not exist: said as such, not as weights missing from the hub cache."""
    if not pretrained:
        return
    if meant_as_path(pretrained, (*WEIGHT_SUFFIXES, ".ckpt")) and not Path(pretrained).expanduser().exists():
        from vipcli.errors import UsageError

        raise UsageError(f"--pretrained {pretrained}: no such file or folder", f"pass an existing {what}, or none "
                         "for random weights")


def short_detail(error: BaseException) -> str:
    """`describe_exception(error)`, cut to MAX_DETAIL characters."""
    return _cut(describe_exception(error))


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL - 1].rstrip() + "…"


PICKLE_FIX = ("pass a .safetensors file of these weights; if you trust where this file came from, "
              "save its tensors with safetensors.torch.save_file and pass that")


def pickled_weights_error(source: str, error: BaseException, fix: str = PICKLE_FIX) -> VipError | None:
    """One line for a weights file torch refused to unpickle with `weights_only=True` (it holds Python objects
    besides tensors, which could run code when loaded), or None for any other failure.

    Torch's own message goes on to suggest loading it with `weights_only=False`, which vip never does.
    `fix` is the hint (the default's, for a weights file given itself).
    """
    seen = 0
    while error is not None and seen < 8:
        if type(error).__name__ == "UnpicklingError" or "weights only load failed" in str(error).lower():
            return VipError(f"the weights file {source} holds pickled Python objects besides tensors; vip loads "
                            "tensors only (unpickling them could run any code)", fix)
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def missing_weights_error(source: str, what: str | None, offline_reason: str | None, error: BaseException,
                          hint: str, thing: str = "weights") -> VipError:
    """One line for weights that could not be loaded: offline and uncached, gated, or another failure.

    Args:
        source: the weights as the user named them (tag, hub id, path).
        what: the model they were for (arch name), or None when `source` names it already.
        thing: what was being loaded ("weights", "the config and tokenizer", ...).
        offline_reason: why the hub was not used (from `hub_access`), or None.
        error: the library's exception.
        hint: what to pass instead.
    """
    mismatch = transformers_torch_error() or pickled_weights_error(source, error)
    if mismatch is not None:
        return mismatch
    whole = describe_exception(error)
    text = _cut(whole)  # shown; the checks below read the whole message
    source = f"'{source}'" + (f" for {what}" if what and what != source else "")
    lowered = whole.lower()
    if re.search(r"\bgated\b|\b40[13] (client error|unauthorized|forbidden)\b", lowered):  # huggingface_hub <1, >=1
        return VipError(f"could not load {thing} {source}: the repository is gated or private "
                        f"({text})", "accept its licence on the hub page, then log in with `hf auth login` or set HF_TOKEN")
    if "sentencepiece" in lowered or "protobuf" in lowered:
        return VipError(f"could not load {source}: its tokenizer needs an extra library ({text})",
                        "pip install sentencepiece protobuf")
    if offline_reason is not None and _looks_missing(error):
        return VipError(f"could not load {thing} {source}: not in the local cache "
                        f"({hub_cache_dir()}) and {offline_reason}", hint)
    suffix = f" ({offline_reason}, so only the local cache was used)" if offline_reason else ""
    return VipError(f"could not load {thing} {source}: {text}{suffix}", hint)


MISSING_ERRORS = {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "EntryNotFoundError", "FileNotFoundError"}
MISSING_WORDS = ("local cache", "cached files", "offline", "connect", "not found")


def _looks_missing(error: BaseException) -> bool:
    """Whether a loading failure (or an exception it was raised from) says a file was not available."""
    seen = 0
    while error is not None and seen < 8:
        text = str(error).lower()
        if type(error).__name__ in MISSING_ERRORS or any(word in text for word in MISSING_WORDS):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def cached_repo(cache: Path, repo: str, weights: bool = False) -> bool:
    """Whether the hub cache `cache` holds the repository `repo` ("vinid/plip"): its folder, and with `weights`, a
    weight file in one of its snapshots (a repository of which only the config and tokenizer were fetched, as a
    `--pretrained none` run fetches them, has none)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    if not weights or not folder.is_dir():
        return folder.is_dir()
    return any(path.suffix in WEIGHT_SUFFIXES for path in folder.glob("snapshots/*/*"))


def fail_fast_if_uncached(repo_ids: list[str] | None, source: str, what: str | None, hint: str,
                          thing: str = "weights", weights_repo: str | None = None) -> None:
    """Before importing a model library (seconds), fail at once if the weights cannot be had.

    Raises the one-line missing-weights error when the hub cannot be reached and the local cache
    lacks the repositories `repo_ids` (hub ids like "vinid/plip"), or the weight files of `weights_repo` (one of
    them), or, when the repositories are not known yet (an open_clip tag), holds no model at all. Otherwise returns
    and the library decides. `thing` is what was to be loaded from them ("weights", "the config and tokenizer").
    """
    cache = Path(hub_cache_dir())
    if repo_ids is None:
        missing = not any(cache.glob("models--*"))
    else:
        missing = any(not cached_repo(cache, repo, weights=repo == weights_repo) for repo in repo_ids)
    reason = hub_unreachable_reason() if missing else None  # cached: no probe of the network here
    if reason is not None:
        shown = f"'{source}'" + (f" for {what}" if what and what != source else "")
        raise VipError(f"could not load {thing} {shown}: not in the local cache ({cache}) and {reason}", hint)


@contextlib.contextmanager
def model_loading(uses_hub: bool = True):
    """`hub_access()` (when the load may touch the hub) and `quiet_libraries()` together.

    Yields the reason the hub is not used (None when it is, or when `uses_hub` is False).
    """
    with hub_access() if uses_hub else contextlib.nullcontext(None) as reason:
        with quiet_libraries(progress=uses_hub and reason is None):
            yield reason
