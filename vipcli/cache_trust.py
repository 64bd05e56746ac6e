"""Whether the cache folder can be trusted: vip reads back what it finds there (image features, LLM
answers, passed plugin checks, weights digests), so a folder that another user can write would let them
change the predictions of every later run, or the symptoms of every generated pack.

A cache folder writable by every user (`VIP_CACHE_DIR=/tmp`, or one made with `chmod 777`) is refused;
one owned by another user (a colleague's shared cache) is used, with a warning once per process. A
folder vip creates itself gets the user's umask. POSIX only: Windows has no such mode bits.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vipcli.errors import VipError

_warned: set[str] = set()  # folders owned by another user, already warned about in this process


def check_cache_root(root: Path) -> Path:
    """Return `root` if vip may read its cache from it; VipError for a folder every user can write.

    A folder that does not exist yet (vip creates it with the user's umask) or cannot be read passes.

    Args:
        root: the cache folder (`$VIP_CACHE_DIR`, else the user cache folder).
    """
    if not hasattr(os, "getuid"):
        return root
    try:
        status = os.stat(root)
    except OSError:
        return root
    where = f"VIP_CACHE_DIR {root}" if os.environ.get("VIP_CACHE_DIR") else f"the cache folder {root}"
    if status.st_mode & stat.S_IWOTH:
        shared = status.st_mode & stat.S_ISVTX  # a shared temporary folder (/tmp): it must stay writable
        raise VipError(f"{where} is writable by every user: anyone on this machine could change the cached "
                       "features or LLM answers that vip reads back",
                       "point VIP_CACHE_DIR at a folder of your own, or unset it" if shared else
                       f"remove others' write permission (chmod o-w {root}), or point VIP_CACHE_DIR at a folder of "
                       "your own")
    if status.st_uid not in (os.getuid(), 0) and str(root) not in _warned:
        _warned.add(str(root))
        from rich.markup import escape

        from vipcli import console
        from vipcli.distributed import world_from_env

        if not world_from_env().main:  # a torchrun rank other than 0 would repeat rank 0's warning
            return root

        console.warn(f"{escape(where)} belongs to another user (uid {status.st_uid}), who can change "
                     "the cached features and LLM answers vip reads back (point VIP_CACHE_DIR at a folder of "
                     "your own if you do not trust them)")
    return root
