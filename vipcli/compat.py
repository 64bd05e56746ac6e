"""Library versions that install side by side but cannot work together, named in one line.

pip resolves vip's requirements one package at a time, so a machine can end up with a torch built
for NumPy 1 beside NumPy 2 (torch < 2.3 declares no NumPy requirement). torch then imports, and
fails deep inside the first image conversion. `check_torch_numpy()` finds that before any work;
the CLI's error boundary asks `explain_library_failure()` about anything unexpected, so the same
line appears wherever the mismatch is first met. (transformers refusing the installed torch is
checked where transformers models load: `vip_backbones.hub.transformers_torch_error`.)
"""

from __future__ import annotations

import functools
import sys

from vipcli.errors import VipError


@functools.lru_cache(maxsize=1)
def torch_numpy_error() -> VipError | None:
    """The error for a torch that cannot use the installed NumPy (None when the two work together)."""
    import numpy
    import torch

    try:
        torch.from_numpy(numpy.zeros(1, dtype=numpy.uint8))
    except (RuntimeError, TypeError):
        return VipError(
            f"torch {torch.__version__} cannot use the installed NumPy {numpy.__version__} "
            "(this torch was built for NumPy 1)",
            "pip install 'numpy<2', or upgrade PyTorch (pip install -U torch torchvision)",
        )
    return None


def check_torch_numpy() -> None:
    """Raise `torch_numpy_error()` if there is one; a few microseconds once torch is imported."""
    error = torch_numpy_error()
    if error is not None:
        raise error


def explain_library_failure(error: BaseException) -> VipError | None:
    """A library mismatch that explains an unexpected `error`, or None (then it is a bug)."""
    if "torch" not in sys.modules or "numpy" not in sys.modules:
        return None
    if isinstance(error, (RuntimeError, TypeError)):
        return torch_numpy_error()
    return None
