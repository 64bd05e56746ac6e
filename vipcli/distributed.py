"""Running vip under torchrun: which rank this process is, its device, its share of the images.

`torchrun --nproc-per-node N -m vipcli ...` starts N copies of vip with RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT set. vip then:
- joins the process group with the gloo backend (only small control messages pass between
  ranks: barriers, and rank 0's view of a `vip predict --out` job, which every rank checks against
  its own (`agree_with_rank_zero`); images and features never cross it, so NCCL buys nothing here
  and gloo works on machines with and without GPUs alike);
- puts each rank on its own GPU (`cuda:LOCAL_RANK`) when `--device` is auto or cuda, else the CPU;
- gives rank r of n the r-th contiguous slice of the work (`shard`).

Outside torchrun (no WORLD_SIZE, or WORLD_SIZE=1) everything here is a no-op: a world of one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta

from vipcli.errors import UsageError, VipError

BARRIER_HOURS = 24.0  # a rank may wait at a barrier while the slowest rank finishes its share of a large archive
MAX_BARRIER_HOURS = 10_000  # over a year: more than any job runs, and far from timedelta's limit


@dataclass(frozen=True)
class World:
    """This process's place among the processes torchrun started."""

    rank: int = 0  # global rank, 0..size-1
    size: int = 1  # number of processes in all (nodes x processes per node)
    local_rank: int = 0  # rank on this node: the GPU index it uses

    @property
    def distributed(self) -> bool:
        """True when several processes share the work."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """True on rank 0, the process that merges outputs and trains."""
        return self.rank == 0


def world_from_env(environ=None) -> World:
    """The World described by torchrun's environment variables (a world of one without them)."""
    environ = os.environ if environ is None else environ
    try:
        size = int(environ.get("WORLD_SIZE", "1"))
        rank = int(environ.get("RANK", "0"))
        local_rank = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UsageError(f"WORLD_SIZE/RANK/LOCAL_RANK must be whole numbers, got {environ.get('WORLD_SIZE')!r}/"
                         f"{environ.get('RANK')!r}/{environ.get('LOCAL_RANK')!r}",
                         "launch vip with torchrun, which sets them") from None
    if size < 1 or not 0 <= rank < size:
        raise UsageError(f"RANK {rank} is outside WORLD_SIZE {size}", "launch vip with torchrun, which sets them")
    return World(rank, size, local_rank)


SHARED_COMMANDS = ("predict", "train", "benchmark")  # the commands whose processes share the work under torchrun


def refuse_unshared_command(command: str) -> None:
    """Refuse, as a command starts, the top-level `command` under torchrun with more than one process when it
    does not share its work (SHARED_COMMANDS): every process would run it in full, all writing the same
    files (`vip demo` under `--nproc-per-node 2` wrote its folder twice at once, then failed). Help is
    never refused (it is shown before a command starts); nor is anything when WORLD_SIZE cannot be read
    (the commands that use it say so)."""
    if command in SHARED_COMMANDS:
        return
    try:
        world = world_from_env()
    except VipError:
        return
    if world.distributed:
        raise UsageError(f"vip {command} runs in one process, not under torchrun ({world.size} processes)",
                         f"run `vip {command} ...` without torchrun; under torchrun, {', '.join(SHARED_COMMANDS)} "
                         "share their work")


_joined: World | None = None
_has_joined = False  # kept after `leave`: every failure from then on is this process's own


def error_for_this_process(message: str, own_process: bool = False, shared: bool = False) -> str | None:
    """The `error:` message this process prints under torchrun, or None for none.

    Before a process joins the group, a failure comes from the command line, the options, the data
    or the environment, which every process of a node shares (torchrun starts them with the same
    ones): the first process of each node (LOCAL_RANK 0) prints it and the others exit with the same
    code in silence, so 8 processes print one line, not 8. A failure that is one process's own
    (`own_process`, or any after joining: an image only its share holds) is printed by the process
    that hits it, naming its rank. A `shared` one (Ctrl-C or SIGTERM, which torchrun and Slurm send to
    every process; or one about every rank's work, which rank 0 alone raises: its merged --out lacks
    records) is printed by each node's first process, before joining or after, naming no rank.
    "First" is the first still running or whose line is printed (`node_ranks.speaks_for_node`): where
    LOCAL_RANK 0 was killed by a signal, the next one says what every rank would.
    """
    try:
        world = world_from_env()
    except VipError:
        return message
    if not world.distributed:
        return message
    if shared or not (_has_joined or own_process):
        from vipcli.node_ranks import speaks_for_node

        return message if speaks_for_node(world.local_rank) else None
    return message if message.startswith("rank ") else f"rank {world.rank} of {world.size}: {message}"


SILENT_EXIT_GRACE_S = 10.0  # how long a silenced process waits before it exits (see `give_the_first_process_time`)


def give_the_first_process_time() -> None:
    """Wait a little before exiting with a failure this process leaves to its node's first process to
    print (`error_for_this_process` gave None): torchrun stops every process as soon as one exits, so the
    first one, a moment slower (still importing, say), was stopped before printing it and said only
    `error: terminated (SIGTERM)`. It prints and exits within the wait; torchrun then stops this one.
    A Ctrl-C or SIGTERM ends the wait early."""
    import time

    try:
        time.sleep(SILENT_EXIT_GRACE_S)
    except KeyboardInterrupt:  # the stop signals raise it (SIGTERM too): exiting now is what is asked
        pass


def join(environ=None) -> World:
    """Join torchrun's process group once (gloo; rendezvous from MASTER_ADDR/MASTER_PORT); return the World."""
    global _joined, _has_joined
    world = world_from_env(environ)
    if not world.distributed:
        return world
    if _joined is not None:
        return _joined
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        raise UsageError("this torch build has no torch.distributed gloo backend, needed under torchrun",
                         "install a standard torch wheel, or run vip without torchrun")
    if not dist.is_initialized():
        check_rendezvous(world, os.environ if environ is None else environ)
        timeout = barrier_timeout(environ)
        try:
            dist.init_process_group("gloo", rank=world.rank, world_size=world.size, timeout=timeout)
        except dist.DistError as error:  # a process that never came within the timeout, a port taken
            raise not_joined(world, os.environ if environ is None else environ, timeout, error) from None
    from vipcli import heartbeats

    heartbeats.start(world.rank, world.size, os.environ if environ is None else environ)  # see `barrier`
    _joined, _has_joined = world, True
    return world


def barrier_timeout(environ=None) -> timedelta:
    """How long a rank waits at a barrier: VIP_BARRIER_HOURS (hours, fractions too), else BARRIER_HOURS.

    Read when a process group is joined, not at import: a bad value is one usage line under
    torchrun, and no concern of a command run without it.
    """
    environ = os.environ if environ is None else environ
    value = environ.get("VIP_BARRIER_HOURS", "").strip()
    if not value:
        return timedelta(hours=BARRIER_HOURS)
    try:
        hours = float(value)
    except ValueError:
        hours = float("nan")
    if not 0 < hours <= MAX_BARRIER_HOURS:  # NaN fails both comparisons
        raise UsageError(f"VIP_BARRIER_HOURS {value!r} is not a number of hours above 0 and up to {MAX_BARRIER_HOURS}",
                         f"unset it (the default is {BARRIER_HOURS:g} hours) or set it to e.g. 48")
    return timedelta(hours=hours)


def not_joined(world: World, environ, timeout: timedelta, error: Exception) -> VipError:
    """The error of a process group that could not be formed: torch's reason (e.g. "Timed out after 1800
    seconds waiting for clients. 1/2 clients joined."), where and how long rank `world.rank` waited."""
    reason = " ".join(str(error).split()) or type(error).__name__
    where = f"{environ.get('MASTER_ADDR', '').strip()}:{environ.get('MASTER_PORT', '').strip()}"
    return VipError(f"rank {world.rank} of {world.size} could not join the others at {where} within "
                     f"{timeout.total_seconds() / 3600:g} hours ({type(error).__name__}: {reason})",
                     "start every process with the same torchrun command, check that each node can reach "
                     "MASTER_ADDR:MASTER_PORT, or raise VIP_BARRIER_HOURS if some start late", own_process=True)


def check_rendezvous(world: World, environ) -> None:
    """UsageError unless MASTER_ADDR and MASTER_PORT say where rank 0 is (torchrun sets both).

    Without them torch's env:// rendezvous fails with a ValueError of its own, which would read
    as a bug in vip; a MASTER_PORT that is not a port number fails the same way.
    """
    hint = "launch vip with torchrun, which sets them, or set MASTER_ADDR and MASTER_PORT to rank 0's host and port"
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not environ.get(name, "").strip()]
    if missing:
        raise UsageError(f"WORLD_SIZE is {world.size} but {' and '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} not set", hint)
    port = environ["MASTER_PORT"].strip()
    if not (port.isdigit() and 0 < int(port) < 65536):
        raise UsageError(f"MASTER_PORT {port!r} is not a port number (1-65535)", hint)


def barrier(world: World, point: str = "a barrier") -> None:
    """Wait until every rank reaches this point (a no-op in a world of one).

    `point` names it for the error line of a wait that fails: another rank stopped (its connection
    closed) or did not come within the barrier timeout. Gloo raises a bare RuntimeError for both.
    A rank whose process stopped running (SIGSTOP, a frozen node: its heartbeat stands still,
    `vipcli.heartbeats`) fails the wait after `heartbeats.STUCK_S`, not the barrier timeout: a slow
    rank still working is waited for, however long its share takes.
    """
    if world.distributed:
        import torch.distributed as dist

        from vipcli import heartbeats

        try:
            heartbeats.watched(dist.barrier, lambda stuck: rank_stuck(world, point, stuck))
        except RuntimeError as error:  # dist.DistError is one too
            raise barrier_failed(world, point, error) from None


def rank_stuck(world: World, point: str, stuck: list[tuple[int, float]]) -> VipError:
    """The one-line error of a rank that waited at `point` for ranks whose processes stopped running ((rank,
    seconds their heartbeat stood still) pairs, `vipcli.heartbeats`)."""
    ranks = [rank for rank, _ in stuck]
    named = f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {', '.join(map(str, ranks[:-1]))} and {ranks[-1]}"
    seconds = min(still for _, still in stuck)
    return VipError(f"rank {world.rank} of {world.size} stopped waiting at {point} for {named}, whose process has "
                    f"not run for {seconds:.0f} s (stopped with kill -STOP or Ctrl-Z, a suspended job, a frozen node); "
                    "nothing half-written was left behind",
                    "resume it (kill -CONT) or end it, then run the same command again: what is finished is kept",
                    own_process=True, failed_wait=(f"{point}: stopped {named}", tuple(ranks)))


def barrier_failed(world: World, point: str, error: Exception) -> VipError:
    """The one-line error of a rank whose wait at `point` failed, from gloo's message (e.g. "[.../pair.cc:561]
    Connection closed by peer [127.0.0.1]:19881. This is typically caused by a remote worker crashing...")."""
    reason = re.sub(r"^\[[^\]]*\]\s*", "", " ".join(str(error).split()))  # gloo's source location
    reason = re.sub(r"\s*\[[^\]]*\]:\d+", "", reason.split(". ")[0]).rstrip(".") or type(error).__name__
    who = f"rank {world.rank} of {world.size}"
    if "timed out" in reason.lower() or "timeout" in reason.lower():
        hours = barrier_timeout().total_seconds() / 3600
        return VipError(f"{who} waited {hours:g} hours at {point} for the other ranks, which did not come ({reason})",
                        "read the other ranks' lines for the one that stopped or hung; raise VIP_BARRIER_HOURS "
                        "if a rank's share takes longer; a rerun keeps what is finished",
                        failed_wait=(f"{point}: timed out", ()))
    from vipcli.node_ranks import silently_lost_ranks

    lost = silently_lost_ranks(world.rank, world.local_rank)
    if lost:
        return VipError(f"{who} lost rank {lost[0]} at {point}: it was killed by a signal (kill -9, the out-of-memory "
                        f"killer, a crash) and printed no line ({reason})",
                        "torchrun's report gives the signal under 'Root Cause'; if memory ran out, start fewer "
                        "processes per node; then run the same command again: what is finished is kept",
                        failed_wait=(f"{point}: lost rank {lost[0]}", tuple(lost)))
    return VipError(f"{who} lost another rank at {point}: it stopped first ({reason})",
                    "the other rank's own error line says why, where it printed one; a rank killed by a signal, "
                    "kill -9 or the out-of-memory killer, prints none, and torchrun's report names it under 'Root "
                    "Cause': fix that and rerun; what is finished is kept", failed_wait=(f"{point}: lost a rank", ()))


VIEW_SETTLE_S = 5.0  # how long a rank that sees otherwise than rank 0 looks again (a network filesystem's caches)


PREDICT_VIEW_HINT = ("run the same command on every node, with --out and the images on a filesystem every node mounts "
                     "at the same path")


def agree_with_rank_zero(world: World, view, point: str = "the start of predicting",
                         hint: str = PREDICT_VIEW_HINT) -> None:
    """Refuse to go on where this rank sees the shared inputs and outputs otherwise than rank 0.

    `view()` maps what the ranks must see alike (say, the --out file and the images) to this rank's
    short text of it. Rank 0 sends its view to every rank (a few hundred bytes over the process
    group). A rank that sees another looks again for up to VIEW_SETTLE_S (a network filesystem may
    show another node's new file a moment late), then fails with one error of its own
    (`view_problem`, then `hint`), before anything is written; rank 0 loses it at its next barrier and
    says so. `point` names where the ranks are, for the error of a rank 0 that stopped meanwhile.
    A no-op in a world of one.
    """
    if not world.distributed:
        return
    import time

    import torch.distributed as dist

    from vipcli import heartbeats

    mine = view()
    theirs = [mine if world.main else None]
    try:
        heartbeats.watched(lambda: dist.broadcast_object_list(theirs, src=0), lambda stuck: rank_stuck(world, point,
                                                                                                        stuck))
    except RuntimeError as error:  # rank 0 stopped meanwhile
        raise barrier_failed(world, point, error) from None
    deadline = time.monotonic() + VIEW_SETTLE_S
    while view_problem(mine, theirs[0]) and time.monotonic() < deadline:
        time.sleep(0.5)
        mine = view()
    problem = view_problem(mine, theirs[0])
    if problem:
        raise VipError(f"rank {world.rank} of {world.size} {problem}", hint, own_process=True)


def rank_zero_value(world: World, compute):
    """`compute()` on rank 0, handed to every rank (`compute` runs nowhere else): what one process decides for
    all, such as the images a resumed `vip predict --out` predicts again. In a world of one, `compute()`."""
    if not world.distributed:
        return compute()
    import torch.distributed as dist

    from vipcli import heartbeats

    value = [compute() if world.main else None]
    point = "the start of predicting"
    try:
        heartbeats.watched(lambda: dist.broadcast_object_list(value, src=0), lambda stuck: rank_stuck(world, point,
                                                                                                       stuck))
    except RuntimeError as error:  # rank 0 stopped meanwhile
        raise barrier_failed(world, point, error) from None
    return value[0]


def view_problem(mine: dict, rank_zero: dict) -> str:
    """"" when this rank's view equals rank 0's, else what differs first, as the rest of a sentence whose
    subject is this rank. Keys: `out` (the absolute --out), `lock` (the text of its lock file, which rank 0
    holds: missing here when this node does not share rank 0's filesystem), `records` (the options and
    model that shape them), `images` (how many, and a digest of their paths in order); for `vip train` and
    `vip benchmark` also `command`, `views` (those encoded of each training image) and `backbone` (the key of
    its features in the cache)."""
    for key, here in mine.items():
        there = rank_zero.get(key)
        if here == there:
            continue
        if key == "out":
            return f"writes --out {here}, rank 0 {there}"
        if key == "lock":
            return (f"does not see the lock file that rank 0 holds beside --out (rank 0: {_holder_words(there)}; "
                    f"here: {_holder_words(here)}): --out is not on a filesystem this node shares with rank 0, "
                    "which merges every rank's records")
        if key == "records":
            return f"writes other records than rank 0 ({here} here; {there} on rank 0)"
        if key == "images":
            return f"finds other images than rank 0 ({_images_words(here, there)})"
        if key == "rows":
            return f"finds {here} rows still to run, rank 0 {there} (their --out folders hold other finished rows)"
        if key == "command":
            return f"runs `vip {here}`, rank 0 `vip {there}`"
        if key == "views":
            return f"encodes other views of the images than rank 0 ({here} here; {there} on rank 0)"
        if key == "backbone":
            return (f"encodes features under another backbone key than rank 0 ({here} here, {there} on rank 0: "
                    "another backbone or weights, or another install of vip, torch or the image libraries)")
        return f"sees another {key} than rank 0 ({here}, not {there})"
    return ""


def _images_words(here: str, there: str | None) -> str:
    """Two `images` views ("COUNT DIGEST") in words: "24 here, 23 on rank 0", or, where the counts are equal,
    "24 on each, but other files or in another order"."""
    count, other = here.split()[0], (there or "0").split()[0]
    if count == other:
        return f"{count} on each, but other files or in another order"
    return f"{count} here, {other} on rank 0"


def _holder_words(lock_text: str | None) -> str:
    """A lock file's text ("PID HOST") in words: "pid 12 on host a", "no lock file", or the text as it is."""
    pid, _, host = (lock_text or "").strip().partition(" ")
    if pid.isdigit() and host:
        return f"pid {pid} on host {host}"
    return repr(lock_text.strip()) if lock_text else "no lock file"


def leave(world: World) -> None:
    """Leave the process group (after the last barrier), marked as done for the ranks of this node
    (`node_ranks`: a rank that ends from here on was not lost)."""
    global _joined
    if world.distributed:
        import torch.distributed as dist

        from vipcli import heartbeats
        from vipcli.node_ranks import DONE_MARK, leave_mark

        leave_mark(DONE_MARK)
        heartbeats.stop()

        if dist.is_initialized():
            dist.destroy_process_group()
        _joined = None


def shard(count: int, world: World) -> range:
    """The indices of `count` items that rank `world.rank` handles: a contiguous slice, sizes differing by <= 1."""
    base, extra = divmod(count, world.size)
    start = world.rank * base + min(world.rank, extra)
    return range(start, start + base + (1 if world.rank < extra else 0))


def rank_device(name: str, world: World):
    """The torch device of this rank: `cuda:LOCAL_RANK` for auto/cuda when GPUs are visible, else as asked."""
    import torch

    from vipcli.devices import resolve_device

    if world.distributed and (name or "auto").lower() in ("auto", "cuda") and torch.cuda.is_available():
        visible = torch.cuda.device_count()
        if world.local_rank >= visible:
            raise UsageError(f"rank {world.rank} wants GPU {world.local_rank} but only {visible} "
                             f"{'is' if visible == 1 else 'are'} visible",
                             "start at most one process per GPU (--nproc-per-node)", own_process=True)
        torch.cuda.set_device(world.local_rank)  # so nothing of this rank lands on GPU 0 by default
        return torch.device(f"cuda:{world.local_rank}")
    if world.distributed and (name or "auto").lower() == "auto":
        return torch.device("cpu")  # several processes on one Apple GPU would only contend
    return resolve_device(name)


def check_shared_cache(world: World, use_cache: bool) -> None:
    """Under torchrun the ranks hand features to rank 0 through the feature cache: it must be on."""
    if world.distributed and not use_cache:
        raise UsageError("--no-cache under torchrun: the ranks share their features through the feature cache",
                         "drop --no-cache; on several nodes, point VIP_CACHE_DIR at a shared folder")


ENCODING_VIEW_HINT = ("run the same command on every node, with the data on a filesystem every node mounts at "
                      "the same path")


def encode_shared(backbone, world: World, jobs, cache, batch_size: int, workers: int, progress=None,
                  chunk: int = 2048, run: dict | None = None) -> bool:
    """Encode this rank's share of `jobs` into the feature cache, wait for every rank, and say who goes on.

    Args:
        jobs: (image paths, views, center) groups, each encoded as `encode_images` would for training:
            the same flags make rank 0's later reads of these images cache hits.
        cache: the FeatureCache every rank writes (entries are written to a temp file and renamed,
            so concurrent writers never leave a torn or mixed entry).
        chunk: images per `encode_images` call, so memory stays flat in the number of images.
        run: what else every rank must agree on with rank 0 (`command`, `out`), beside the images, their
            views and the backbone (`encoding_view`): a rank started otherwise stops before encoding.
    Returns:
        True on rank 0 (which goes on to train on the cached features), False on the other ranks.
    """
    if not world.distributed:
        return True
    from vipcli import console
    from vipcli.features import encode_images

    world = join()  # late: every check before this point failed on each node's first process alone
    agree_with_rank_zero(world, lambda: {**(run or {}), **encoding_view(jobs, cache)}, "the start of encoding",
                         ENCODING_VIEW_HINT)

    mine = [(paths[i], views, center) for paths, views, center in jobs for i in shard(len(paths), world)]
    with console.task(progress, f"encoding images (rank {world.rank} of {world.size})", len(mine)) as advance:
        start = 0
        while start < len(mine):
            part = mine[start:start + chunk]
            for views, center in dict.fromkeys((v, c) for _, v, c in part):
                paths = [p for p, v, c in part if (v, c) == (views, center)]
                encode_images(backbone, paths, views, cache, batch_size, workers, advance=advance, center=center)
            start += chunk
    barrier(world, "the end of encoding")
    if not world.main:
        console.info(handed_over(world, len(mine), cache.writable))
    elif cache.writable:
        # rank 0's share of each job is its first slice: the other ranks encoded the rest
        others = [path for paths, _, _ in jobs for path in paths[len(shard(len(paths), world)):]]
        if others and not any(cache.entry_file(path).exists() for path in others[::max(1, len(others) // 64)]):
            console.warn(f"rank 0 finds none of the {len(others)} images the other ranks encoded in its feature "
                         f"cache ({cache.folder.parent.parent}), so it encodes them itself: on several nodes, "
                         "point VIP_CACHE_DIR at a folder every node shares")
    leave(world)
    return world.main


def agree_without_encoding(world: World, run: dict) -> None:
    """Under torchrun, check with rank 0 that it too has nothing to encode (`run`: what the ranks must agree on,
    such as `vip benchmark`'s rows still to run), then leave the group; a no-op in a world of one.

    A `vip benchmark` rank whose --out holds every row encodes nothing; had it skipped the group while rank 0
    had rows to run (another --out, a folder its node sees otherwise), rank 0 waited at its join for a rank that
    never came, up to VIP_BARRIER_HOURS. Now the rank that differs says so, and rank 0 loses it at once. Its
    view names no images, so that it differs from that of a rank 0 that encodes some even where `run` does not.
    """
    if not world.distributed:
        return
    world = join()
    agree_with_rank_zero(world, lambda: {**run, "images": paths_view([])}, "the start of the benchmark",
                         ENCODING_VIEW_HINT)
    barrier(world, "the start of the benchmark")
    leave(world)


def encoding_view(jobs, cache) -> dict:
    """What the ranks of `vip train`/`vip benchmark` must see alike to share the encoding of `jobs` (as
    `encode_shared` takes them) through `cache`: the images (their number and a digest of their absolute paths in
    order), the views of each training image, and the backbone's key in the cache. A rank started with other
    data, --shots, --seed(s), --views or backbone would encode features that rank 0 never reads, and rank 0 would
    encode its share again (then warn, wrongly, that the cache is not shared)."""
    _, views, center = jobs[0] if jobs else ((), 0, True)
    described = f"{views} augmented view{'' if views == 1 else 's'}{' and the center view' if center else ''}"
    images = paths_view(os.path.abspath(path) for group, _, _ in jobs for path in group)
    return {"images": images, "views": f"{described} of each training image", "backbone": cache.key}


def paths_view(paths) -> str:
    """Image paths (strings) as ranks compare them (the `images` of a view): "COUNT DIGEST", 16 hex digits of the
    sha256 of the paths in order."""
    import hashlib

    paths = list(paths)
    digest = hashlib.sha256("\n".join(paths).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"{len(paths)} {digest}"


def handed_over(world: World, count: int, cached: bool) -> str:
    """The last line of a rank other than 0: what it left in the feature cache for rank 0.

    `cached` is False when the cache stopped taking entries (full, or not writable; warned before):
    then rank 0 finds those features missing and encodes them itself, and the line says so.
    """
    images = f"{count} image{'' if count == 1 else 's'}"
    if cached:
        return f"rank {world.rank}: encoded {images} into the feature cache; rank 0 trains"
    return (f"rank {world.rank}: encoded {images}, but the feature cache could not be written; "
            "rank 0 encodes the missing ones itself, then trains")


def training_jobs(dataset, shots, seeds, views: int, center: bool) -> list:
    """What `vip train`/`vip benchmark` will ask the cache for, as `encode_shared` jobs.

    Training images: every one when `shots` is None (a full-data run), else per seed and class the
    first `shots` of its seeded few-shot order (rank 0 encodes any replacement for an unreadable one
    itself); with `views` augmented views, and the center view if `center`. Val and test: center view.
    """
    from vipcli.data import few_shot_order, few_shot_union

    train = dataset.splits["train"]
    orders = [] if shots is None else [few_shot_order(train, len(dataset.class_names), seed)
                                       for seed in dict.fromkeys(seeds)]
    chosen = few_shot_union(train, orders, shots)
    return [([s.path for s in chosen], views, center),
            ([s.path for s in dataset.splits["val"]] + [s.path for s in dataset.splits["test"]], 0, True)]
