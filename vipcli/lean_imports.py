"""Libraries a dependency imports eagerly that a `vip` command does not use: left out of that process.

open_clip imports transformers (and, through it, parts of scikit-learn) when it is imported, for the few
models whose text tower comes from Hugging Face (BiomedCLIP's BERT) and for CoCa's caption generation. A
CLIP-style model never touches it, yet every `vip train` and `vip predict` of one paid for it: 1.1 s of a
2-core CPU, 1.3-4.4 s on a GPU machine whose file system makes imports slow (docs/SPEED.md has the
figures). The `vip` command (`vipcli.cli.main.run`) turns `enabled` on; the Python interface never does,
so a notebook that imports vip keeps open_clip exactly as open_clip imports itself (CoCa's generation
included).
"""

from __future__ import annotations

import contextlib
import sys

enabled = False  # set by the `vip` command (`vipcli.cli.main.run`), never by the Python interface


@contextlib.contextmanager
def left_out(name: str):
    """Inside the block, `import NAME` raises ImportError (Python's own way: `sys.modules[NAME] = None`), as if
    NAME were not installed; after it, NAME imports as usual. A block where NAME is already imported, or where
    `enabled` is off, changes nothing."""
    if not enabled or name in sys.modules:
        yield
        return
    try:
        sys.modules[name] = None  # inside the try: a Ctrl-C right after it still takes the marker away
        yield
    finally:
        if sys.modules.get(name, "") is None:
            del sys.modules[name]
