"""Libraries a dependency imports eagerly that a `vip` command does not use: left out of that process.

open_clip imports transformers (and, through it, parts of scikit-learn) when it is imported, for the few
models whose text tower comes from Hugging Face (BiomedCLIP's BERT) and for CoCa's caption generation. A
CLIP-style model never touches it, yet every `vip train` and `vip predict` of one paid for it: about 0.65 s
of CPU time of a warm `vip train` on a 2-core CPU, 3.0-4.4 s on an H200 machine whose file system makes
imports slow (README, "Measured on one H200", has the figures). The `vip` command (`vipcli.cli.main.run`)
turns `enabled` on; the Python interface never does, so a notebook that imports vip keeps open_clip exactly
as open_clip imports itself (CoCa's generation included, where the installed transformers allows it).
"""

from __future__ import annotations

import contextlib
import sys

enabled = False  # set by the `vip` command (`vipcli.cli.main.run`), never by the Python interface


@contextlib.contextmanager
def left_out(name: str):
    """Inside the block, `import NAME` raises ImportError (Python's own way: `sys.modules[NAME] = None`), as if
    NAME were not installed; after it, NAME imports as usual. A block where NAME is already imported, or where
    `enabled` is off, changes nothing. `sys.modules` is the process's: another thread that imports NAME while
    the block runs gets the ImportError too (the `vip` command runs no other thread while it loads a backbone)."""
    if not enabled or name in sys.modules:
        yield
        return
    try:
        sys.modules[name] = None  # inside the try: a Ctrl-C right after it still takes the marker away
        yield
    finally:
        if sys.modules.get(name, "") is None:
            del sys.modules[name]
