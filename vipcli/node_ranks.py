"""Under torchrun: which of this node's ranks are still running, which printed their error line, and so which
one speaks for the node when every rank stops.

torchrun's agent starts the ranks of a node as its own child processes, and gives each a folder of its own for
this attempt (`.../attempt_N/<LOCAL_RANK>/`, where it looks for the rank's `error.json`). A rank that fails
leaves a mark there once its `error:` line is printed (by itself, or by its node's first rank), and a rank that
finishes its part of the work leaves another as it leaves the process group; a rank killed by a signal (kill -9,
the out-of-memory killer) prints nothing and leaves no mark. Once one rank ends, torchrun stops the others with
SIGTERM, and the `terminated` line they share is printed by one process per node: the first rank of the node that
is still running or whose line is printed; it names the ranks that ended with neither mark. Without this, that
was always LOCAL_RANK 0, and where LOCAL_RANK 0 itself was killed, nothing was printed at all.

Only a rank that had started vip (its STARTED_MARK is left once vip's handlers of Ctrl-C and SIGTERM are in place)
is named: before that, torchrun's own SIGTERM ends a rank without a line too (one still starting Python when another
rank failed), and it was named as killed by kill -9 or the out-of-memory killer, the cause of the stop, when it was
its result. A rank that started vip prints a line for SIGTERM and Ctrl-C: ending with neither mark, it was killed by
a signal no program can handle (kill -9, the out-of-memory killer) or crashed.

Everything here reads only /proc (Linux) and the agent's folders, and answers None ("not known") wherever it
cannot be sure: a process not started by torchrun's agent, another OS, a torchrun without log folders. Callers
then keep the rule of old: LOCAL_RANK 0 speaks, naming no lost rank.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SAID_MARK = "vip-said"  # the file a rank leaves in its torchrun folder once its `error:` line is printed
DONE_MARK = "vip-done"  # ... and the one it leaves once its part of the work is done (it left the process group)
STARTED_MARK = "vip-started"  # ... and the one it leaves once Ctrl-C and SIGTERM give it a line (`vip` started in it)


def rank_folder(local_rank: int, environ=None) -> Path | None:
    """The folder torchrun's agent gave the rank of this node numbered `local_rank` (beside this process's own,
    named by TORCHELASTIC_ERROR_FILE), or None where it gave none or laid them out otherwise."""
    environ = os.environ if environ is None else environ
    error_file = environ.get("TORCHELASTIC_ERROR_FILE", "")
    own = Path(error_file).parent if error_file else None
    if own is None or own.name != environ.get("LOCAL_RANK", "").strip():
        return None
    return own.parent / str(local_rank)


def leave_mark(mark: str, environ=None) -> None:
    """Leave `mark` (SAID_MARK, DONE_MARK) in this rank's torchrun folder; nothing where torchrun gave none."""
    environ = os.environ if environ is None else environ
    try:
        folder = rank_folder(int(environ.get("LOCAL_RANK", "0") or 0), environ)
    except ValueError:
        return
    if folder is not None:
        try:
            (folder / mark).touch()
        except OSError:  # the agent's folder is gone or read-only: the others fall back to the old rule
            pass


def marked_local_ranks(mark: str, local_size: int, environ=None) -> set[int]:
    """The local ranks of this node whose torchrun folder holds `mark`."""
    marked = set()
    for local_rank in range(local_size):
        folder = rank_folder(local_rank, environ)
        if folder is not None and (folder / mark).exists():
            marked.add(local_rank)
    return marked


def running_local_ranks(environ=None) -> set[int] | None:
    """The LOCAL_RANKs of this node's ranks still running: the children of torchrun's agent (this process's
    parent) that carry this run's TORCHELASTIC_RUN_ID; None where that cannot be known (not Linux, not started by
    torchrun's agent, or through a wrapper, /proc unreadable). A rank that died but was not yet reaped (a zombie) is
    not running."""
    environ = os.environ if environ is None else environ
    run_id = environ.get("TORCHELASTIC_RUN_ID")
    if not sys.platform.startswith("linux") or not run_id:
        return None
    parent = os.getppid()
    if _local_rank_of(str(parent), run_id) is not None:
        return None  # started through a wrapper (`--no-python bash -c ...`): the agent is not the parent
    try:
        children = [pid for task in Path(f"/proc/{parent}/task").iterdir()
                    for pid in (task / "children").read_text().split()]
    except OSError:
        return None
    running = set()
    for pid in children:
        local_rank = _local_rank_of(pid, run_id)
        if local_rank is not None:
            running.add(local_rank)
    return running


def _local_rank_of(pid: str, run_id: str) -> int | None:
    """The LOCAL_RANK of the running process `pid` when it is a rank of torchrun run `run_id`; else None (another
    program, a zombie, a process gone meanwhile)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return None
        variables = dict(item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                         if b"=" in item)
    except (OSError, IndexError):
        return None
    if variables.get(b"TORCHELASTIC_RUN_ID") != os.fsencode(run_id):
        return None
    try:
        return int(variables.get(b"LOCAL_RANK", b""))
    except ValueError:
        return None


def node_state(environ=None) -> tuple[set[int], set[int], set[int]] | None:
    """(running, said, done): the local ranks of this node still running, those whose `error:` line is printed, and
    those that finished their part; None where not known."""
    environ = os.environ if environ is None else environ
    try:
        local_size = int(environ.get("LOCAL_WORLD_SIZE", ""))
    except ValueError:
        return None
    running = running_local_ranks(environ)
    if running is None or rank_folder(0, environ) is None:
        return None
    return (running, marked_local_ranks(SAID_MARK, local_size, environ),
            marked_local_ranks(DONE_MARK, local_size, environ))


def speaks_for_node(local_rank: int, environ=None) -> bool:
    """Whether this process prints the line every rank of its node shares (Ctrl-C, SIGTERM, a mistake in the
    command): the first local rank still running or that printed its line; LOCAL_RANK 0 where that is not known."""
    if local_rank == 0:
        return True
    state = node_state(environ)
    if state is None:
        return False
    running, said, _ = state
    return local_rank == min(running | said | {local_rank})


def silently_lost_ranks(rank: int, local_rank: int, environ=None) -> list[int]:
    """The global ranks of this node that started vip and ended without an `error:` line and before their part was
    done (killed by a signal), in order; [] where none did or that is not known. A rank that ended before vip started
    in it is not named: torchrun's own SIGTERM ends such a rank silently too. torchrun numbers a node's ranks on from
    its first: RANK - LOCAL_RANK."""
    environ = os.environ if environ is None else environ
    state = node_state(environ)
    if state is None:
        return []
    running, said, done = state
    local_size = int(environ["LOCAL_WORLD_SIZE"])
    first = rank - local_rank
    started = marked_local_ranks(STARTED_MARK, local_size, environ)
    accounted = running | said | done | {local_rank}  # this process runs, whether the agent's listing shows it or not
    return [first + other for other in sorted(started) if other not in accounted]


SAY_WAIT_S = 1.5  # how long a rank that fails a wait gives the node's expected speaker to say it first
WAIT_MARK = "vip-said-wait"  # in torchrun's folder for this attempt: the node's one line of a failed wait or stop


def say_once_per_node(say, key: str, waited_for: tuple[int, ...] = (), environ=None) -> None:
    """Call `say()` (print the line of a wait that failed) unless another rank of this node printed the line of a
    failed wait in this attempt (`key`: the wait and how it failed, kept in the mark; `waited_for`: the global ranks
    it waited for, where known): 8 ranks waiting for a stopped or killed one printed 7 copies of one sentence.

    One line per node and attempt: the first rank to create the node's WAIT_MARK (a file in torchrun's folder for
    this attempt, made with O_EXCL, so of the ranks that fail together exactly one does) says it, with Ctrl-C and
    SIGTERM held from the mark to the line, so that a mark is never left without its line. Any wait that fails on
    the node after it is its consequence (the rank that said it exits, which closes its connections, and torchrun
    stops the rest), whatever it reads (`lost another rank ...`), and is not said again. The rank expected
    to say it (the first local rank still running that was not waited for) tries at once; the others give it up to
    SAY_WAIT_S to do so (it may be the rank that stopped, or slower to fail), then try themselves. A Ctrl-C or
    SIGTERM (torchrun stopping the ranks) ends that wait early. Where this cannot be known (no torchrun folders, a
    mark that cannot be written) every rank says its own line, as before.
    """
    import time

    from vipcli import stop_signals

    environ = os.environ if environ is None else environ
    try:
        rank, local_rank = int(environ.get("RANK", "")), int(environ.get("LOCAL_RANK", ""))
        local_size = int(environ.get("LOCAL_WORLD_SIZE", ""))
    except ValueError:
        local_size = None
    first_folder = rank_folder(0, environ) if local_size is not None else None
    if first_folder is None:
        say()
        return
    mark = first_folder.parent / WAIT_MARK
    first = rank - local_rank  # torchrun numbers a node's ranks on from its first
    expected = set(range(local_size)) - {other - first for other in waited_for}
    running = running_local_ranks(environ)
    if running is not None:
        expected &= running
    if local_rank != min(expected | {local_rank}):
        deadline = time.monotonic() + SAY_WAIT_S
        try:
            while not mark.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        except KeyboardInterrupt:  # the stop signals raise it: try now, so that the node is not left without a line
            pass
    try:
        with stop_signals.deferred():
            if _first_to_mark(mark, f"{local_rank} {key}\n"):
                say()
    except KeyboardInterrupt:  # a Ctrl-C or SIGTERM held meanwhile: this rank is ending with its own code already
        pass


def _first_to_mark(mark: Path, text: str) -> bool:
    """Create `mark` holding `text`, atomically: True for the one process that does (or where the folder cannot be
    written, so that no line is lost), False where another made it first."""
    try:
        handle = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    except OSError:  # the agent's folder is gone or read-only: say it, as every rank did before
        return True
    try:
        os.write(handle, text.encode("utf-8", "surrogateescape"))
    finally:
        os.close(handle)
    return True
