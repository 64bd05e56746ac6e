"""Choosing the torch device: `auto` prefers CUDA, then MPS, then the CPU."""

from __future__ import annotations

from vipcli.errors import UsageError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto"):
    """Return the torch.device for `name`, failing clearly if it is not available here.

    Args:
        name: one of auto, cpu, cuda, cuda:N, mps.
    Returns:
        torch.device
    """
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA GPU is visible to torch", "use --device cpu or auto")
        return torch.device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UsageError("--device mps: Apple MPS is not available here", "use --device cpu or auto")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"unknown device '{name}'", f"choose one of {', '.join(DEVICE_CHOICES)}")


def autocast_dtype(device):
    """The dtype vip's autocast computes in on `device`: bfloat16 on CUDA, None (float32) elsewhere."""
    import torch

    return torch.bfloat16 if torch.device(device).type == "cuda" else None


def autocast(device):
    """bf16 autocast on CUDA, a no-op context elsewhere (see `autocast_dtype`).

    Without autocast's weight cache: the text tower's weights are frozen (the cache keeps only
    casts of trainable leaves, so it saves nothing here), and CUDA graph capture refuses it.
    """
    import contextlib

    import torch

    dtype = autocast_dtype(device)
    if dtype is not None:
        return torch.autocast(torch.device(device).type, dtype=dtype, cache_enabled=False)
    return contextlib.nullcontext()


def _seconds(step, repeats: int = 2) -> float:
    import time

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats


class fastest_cpu_threads:
    """Run a block with whichever is faster for `step` on the CPU: torch's threads, or one.

    The text-side step of prompt learning is many small matrix products; on a small CPU,
    intra-op threading often costs more than it gains (and far more when other processes
    compete for the cores). `step` must not change any state (e.g. forward + backward with
    gradients cleared after). A no-op on GPUs and when torch already uses one thread.
    """

    def __init__(self, step, device):
        self.step, self.device = step, device
        self.previous: int | None = None

    def __enter__(self) -> int:
        import torch

        threads = torch.get_num_threads()
        if self.device.type != "cpu" or threads == 1:
            return threads
        self.previous = threads
        default = _seconds(self.step)
        torch.set_num_threads(1)
        if _seconds(self.step) >= default:
            torch.set_num_threads(threads)
        return torch.get_num_threads()

    def __exit__(self, *exc) -> None:
        import torch

        if self.previous is not None:
            torch.set_num_threads(self.previous)
