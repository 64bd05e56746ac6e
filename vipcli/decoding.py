"""Decoding worker processes: the DataLoaders that read and transform images beside the encoder.

A decoder here is a Dataset indexed by the job itself (whatever the caller's `__getitem__` takes: a path,
a tuple), and the jobs to decode are the loader's sampler. That lets one set of worker processes
(`DecodingWorkers`) decode several lists of jobs one after another, the train, val and test splits of a
run or the chunks of `vip predict`, where each list used to start and stop workers of its own: on a
16-core GPU machine a start costs a good part of a second, and a run paid it three times or more.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import time

import torch

from vipcli.env_flags import env_flag
from vipcli.settings import usable_workers

FORKED_MIN_IMAGES = 8  # the fewest images decoded in worker processes that start as a fork of this one
SPAWNED_MIN_IMAGES = 512  # ... that each start a fresh Python importing torch (spawn: macOS, Windows; forkserver)


class Jobs:
    """The jobs a loader decodes next, as its sampler; `DecodingWorkers` replaces them between lists."""

    def __init__(self, jobs=()):
        self.jobs = list(jobs)

    def __iter__(self):
        return iter(self.jobs)

    def __len__(self):
        return len(self.jobs)


def decoding_workers(images: int, workers: int) -> int:
    """Worker processes for decoding `images` images: none for fewer images than starting them costs, else
    `workers`, at most the usable cores.

    A forked worker starts at once. A spawned one (macOS's and Windows' start method) imports torch and
    torchvision first, seconds each: on this project's 2-core machine `vip train --backbone toy --shots 16
    --workers 2` on 230 ISIC images took 54 s under spawn (workers started for each of train, val and test),
    9 s with its workers decoding in the main process, as under fork.
    """
    import multiprocessing

    method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    least = FORKED_MIN_IMAGES if method == "fork" else SPAWNED_MIN_IMAGES
    return usable_workers(workers) if images >= least else 0


PREFETCH = 4  # groups each decoding worker may have decoded ahead of the encoder


def loader(decoder, jobs, workers: int, persistent: bool = False):
    """The DataLoader that decodes `jobs` (an iterable of `decoder` indices) in `workers` processes (exactly:
    the caller chose the number), in order, drawing nothing from torch's global generator.

    A DataLoader without a generator of its own draws its workers' base seed from the global one each time
    it is iterated (with no workers too): `vip train` seeds that generator before encoding, and a method's fit
    may draw from it, so a cold cache (one loader per split) and a warm one (none) handed fit other random
    numbers. A decoder's randomness must come from its jobs (vip's views: `features.view_seed`).
    `persistent`: the workers outlive one pass over the jobs (`DecodingWorkers`).
    """
    return torch.utils.data.DataLoader(
        decoder, batch_size=None, sampler=jobs, num_workers=workers, generator=torch.Generator().manual_seed(0),
        prefetch_factor=PREFETCH if workers else None, persistent_workers=persistent and workers > 0,
        worker_init_fn=worker_ignores_sigterm,
    )


@contextlib.contextmanager
def workers_stopped_after(data_loader):
    """Iterate DataLoader `data_loader` inside the block; however the block ends, its decoding workers are
    shut down as it ends.

    An error raised in a worker (a decoder failing on one file) reaches the caller with a traceback that
    holds the loader's iterator, so PyTorch shut its workers down only when the garbage collector
    freed it, at exit: there the index queues no longer reached the workers (5 s per worker lost),
    and the workers, which ignore SIGTERM (`worker_ignores_sigterm`), outlived multiprocessing's
    `terminate()`, whose `join()` then waited for them for ever: the command printed its error and
    never exited.
    """
    batches = iter(data_loader)
    try:
        yield batches
    finally:
        _shut_down(batches)


def _shut_down(batches) -> None:
    shut_down = getattr(batches, "_shutdown_workers", None)  # PyTorch's own clean-up (None: no workers)
    if shut_down is not None:
        shut_down()


def decoded(decoder, jobs: list, workers: int, shared: DecodingWorkers | None = None):
    """A block iterating what `decoder` makes of each of `jobs`, in order: in the `shared` workers when
    given, else in `workers` processes (exactly: see `decoding_workers`) started for these jobs alone."""
    if shared is not None:
        return shared.decoded(decoder, jobs)
    return workers_stopped_after(loader(decoder, Jobs(jobs), workers))


class DecodingWorkers:
    """Decoding worker processes shared by the lists of jobs decoded inside its block (a context manager).

    They start with the first list that needs them and stop when the block ends, however it ends; the
    number is decided once, for `images`, every image the block may decode (`decoding_workers`). A list
    for another decoder (another backbone or image fit) starts fresh workers. A pass that does not finish
    (an error, a Ctrl-C) stops them too: the next list starts new ones.
    """

    def __init__(self, workers: int, images: int):
        self.workers = decoding_workers(images, workers)
        self._jobs = Jobs()
        self._made = None  # (key, decoder) of `decoder_for`
        self._loader = None  # its `dataset` is the decoder its workers were started for
        self._batches = None

    def decoder_for(self, key: tuple, make):
        """The decoder `make()` builds for `key` (a backbone, then settings), the same object while the key is,
        so that consecutive lists of one backbone and image fit share the workers."""
        if self._made is None or not _same(self._made[0], key):
            self._made = key, make()
        return self._made[1]

    def __enter__(self) -> DecodingWorkers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        self._made = None

    @contextlib.contextmanager
    def decoded(self, decoder, jobs: list):
        """Iterate what `decoder` makes of each of `jobs`, in order, in these workers."""
        if not self.workers:  # nothing to share: the main process decodes
            with workers_stopped_after(loader(decoder, Jobs(jobs), 0)) as batches:
                yield batches
            return
        if self._loader is None or self._loader.dataset is not decoder:
            self.close()
            self._loader = loader(decoder, self._jobs, self.workers, persistent=True)
            atexit.register(self.close)  # before multiprocessing's own exit handler, which would wait for ever
        self._jobs.jobs = list(jobs)
        finished = False
        try:
            self._batches = iter(self._loader)  # the first time starts the workers; then they resume
            yield self._batches
            finished = True
        finally:
            if not finished:
                self.close()

    def close(self) -> None:
        """Stop the workers (if any started); a later list starts new ones."""
        if self._batches is not None:
            _shut_down(self._batches)
        if self._loader is not None:
            atexit.unregister(self.close)
        self._loader = self._batches = None


def _same(key: tuple, other: tuple) -> bool:
    """Keys match: the same objects (a backbone is compared by identity) or equal settings."""
    return len(key) == len(other) and all(a is b or (not isinstance(a, torch.nn.Module) and a == b)
                                          for a, b in zip(key, other))


def worker_ignores_sigterm(_worker_id: int) -> None:
    """In a decoding worker: ignore SIGTERM, which `kill`/`timeout`/Slurm send to the whole process group.

    The main process stops on it as on Ctrl-C and shuts its workers down itself; a worker killed
    first made PyTorch print a traceback ("DataLoader worker ... is killed by signal: Terminated").
    A worker whose main process dies still exits (PyTorch's workers watch their parent), and says
    nothing of the connection to it that broke (`_quiet_once_orphaned`).
    """
    import signal
    import threading

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.excepthook = _quiet_once_orphaned(threading.excepthook, os.getppid())


def _quiet_once_orphaned(hook, parent: int):
    """A thread-exception hook for a decoding worker: a broken connection after its main process
    `parent` died (`kill -9`, the OOM killer) is dropped, not printed as a traceback on the user's
    terminal seconds later (the thread that hands batches over met "Connection reset by peer");
    anything else, or anything with VIP_DEBUG=1, goes to `hook`."""
    def quiet(args) -> None:
        if issubclass(args.exc_type, (ConnectionError, EOFError)) and not env_flag("VIP_DEBUG"):
            for _ in range(20):  # the parent's sockets close as it exits, a moment before we are reparented
                if os.getppid() != parent:
                    return
                time.sleep(0.05)
        hook(args)

    return quiet
