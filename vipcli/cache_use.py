"""Whether the command running now may use the cache folder for what vip remembers between processes besides
features: the digests of weights files (`vipcli.digests`) and the passes of the load-time checks
(`vipcli.registry`). A command run with `--no-cache` may not: it neither reads nor writes them, so it also works
where the cache folder is not trusted (one every user can write, `vipcli.cache_trust`)."""

from __future__ import annotations

import contextlib
import contextvars

_in_use: contextvars.ContextVar[bool] = contextvars.ContextVar("vip_cache_in_use", default=True)


@contextlib.contextmanager
def using_cache(on: bool):
    """Inside this block with `on` False (`--no-cache`), `cache_in_use()` is False: weights files are read once per
    process and the load-time checks run at every load, with nothing read from or written to the cache folder."""
    token = _in_use.set(on)
    try:
        yield
    finally:
        _in_use.reset(token)


def cache_in_use() -> bool:
    """Whether weights digests and passed checks may be read from and kept in the cache folder (see `using_cache`)."""
    return _in_use.get()
