"""Past one machine (#13): `vip predict --out` streams and resumes; torchrun shards predict and training.

The torchrun tests start real ranks (`python -m torch.distributed.run --nproc-per-node 2`, CPU, gloo,
127.0.0.1 on a free port) on a small lesion world with the shipped toy backbone. Each launch costs
a few seconds of process start-up (torch is imported by the launcher and by every rank).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lesion_runs import trained_world

HOOKS = Path(__file__).parent / "torchrun_hooks.py"


def _gloo_available() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    return dist.is_available() and dist.is_gloo_available()


needs_gloo = pytest.mark.skipif(not _gloo_available(), reason="torch.distributed with gloo is not available")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A lesion world and a toy-backbone run trained on it (once for the module)."""
    return trained_world(tmp_path_factory, {"train": 10, "val": 6, "test": 12})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pythonpath() -> str:
    """PYTHONPATH for a process started in another folder: the tests' helpers, and this checkout's `vipcli` before an
    installed one (a clone tested against another tree's editable install would run that tree's code)."""
    here = Path(__file__).resolve().parent
    return os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")])


def torchrun(args: list, cwd: Path, cache: Path, script: list | None = None, processes: int = 2,
             **env) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --nproc-per-node PROCESSES -m vipcli ARGS` on this machine's CPU."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(processes),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
               *(script or ["-m", "vipcli"]), *map(str, args)]
    environment = {**os.environ, "VIP_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
                   "PYTHONPATH": pythonpath(), **env}
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=180)


def two_nodes(args: list, envs: list) -> tuple[list[int], list[str]]:
    """Ranks 0 and 1 of a world of 2, each as the first process of its own node (LOCAL_RANK 0), run as
    `python -m vipcli ARGS[r]` with ENVS[r] (one machine standing in for two); their exit codes and stderr."""
    environment = {**os.environ, "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    ranks = [subprocess.Popen([sys.executable, "-m", "vipcli", *map(str, args[rank])],
                              env={**environment, **envs[rank], "RANK": str(rank)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    said = [rank.communicate(timeout=180)[1] for rank in ranks]
    return [rank.returncode for rank in ranks], said


def lines(file: Path) -> list[str]:
    return file.read_text(encoding="utf-8").splitlines()


# --- sharding -------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 7, 30])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shards_cover_every_item_once_contiguously(count, size):
    from vipcli.distributed import World, shard

    shards = [shard(count, World(rank, size, rank)) for rank in range(size)]
    assert [i for s in shards for i in s] == list(range(count))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_outside_torchrun_is_a_world_of_one():
    from vipcli.distributed import join, world_from_env

    assert not world_from_env({}).distributed and world_from_env({}).main
    assert join({}).size == 1  # joins nothing
    assert world_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}).local_rank == 1


def test_no_cache_under_torchrun_is_refused_with_a_plain_hint():
    from vipcli.distributed import World, check_shared_cache
    from vipcli.errors import UsageError

    check_shared_cache(World(), use_cache=False)  # one process: --no-cache is fine
    with pytest.raises(UsageError) as refused:
        check_shared_cache(World(1, 2, 1), use_cache=False)
    assert str(refused.value) == ("--no-cache under torchrun: the ranks share their features through the feature "
                                  "cache (drop --no-cache; on several nodes, point VIP_CACHE_DIR at a shared folder)")


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf", "1e20"])
def test_a_bad_barrier_timeout_is_one_usage_error(value):
    from vipcli.distributed import barrier_timeout
    from vipcli.errors import UsageError

    assert barrier_timeout({}).total_seconds() == 24 * 3600
    assert barrier_timeout({"VIP_BARRIER_HOURS": "0.5"}).total_seconds() == 1800
    with pytest.raises(UsageError, match="VIP_BARRIER_HOURS"):
        barrier_timeout({"VIP_BARRIER_HOURS": value})


def test_a_fractional_barrier_timeout_does_not_break_a_command_without_torchrun(toy_run, tmp_path):
    data, run = toy_run
    env = {**os.environ, "VIP_BARRIER_HOURS": "0.5", "VIP_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "vipcli", "predict", data / "test", "--model", run, "--out",
                           tmp_path / "p.jsonl", "--workers", "0"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and "error" not in done.stderr, done.stderr


# --- streaming and resuming in one process ----------------------------------------------------------


def test_out_streams_the_same_records_as_json(cli, toy_run, tmp_path):
    data, run = toy_run
    code, _, err = cli("predict", data / "test", "--model", run, "--out", tmp_path / "p.jsonl", "--workers", "0")
    assert code == 0, err
    code, out, _ = cli("predict", data / "test", "--model", run, "--json", "--workers", "0")
    expected = json.loads(out)["predictions"]
    records = [json.loads(line) for line in lines(tmp_path / "p.jsonl")]
    assert [r["path"] for r in records] == [p["path"] for p in expected] and len(records) == 24
    assert [(r["label"], r["probabilities"]) for r in records] == [(p["label"], p["probabilities"]) for p in expected]
    assert "24 of 24 images, 24 predicted now" in err


def test_a_killed_run_resumes_without_predicting_twice(cli, toy_run, tmp_path, monkeypatch):
    from vipcli import predict as predict_module

    data, run = toy_run
    full, cut = tmp_path / "full.csv", tmp_path / "cut.csv"
    assert cli("predict", data / "test", "--model", run, "--out", full, "--coverage", "0.9", "--workers", "0")[0] == 0
    text = full.read_text()
    keep = text.index("\n", len(text) // 2) + 1
    cut.write_text(text[:keep] + text[keep:keep + 17])  # complete records, then a torn line
    kept = len(text[:keep].splitlines()) - 1  # less the header
    seen = []
    original = predict_module.stream_predictions
    monkeypatch.setattr(predict_module, "stream_predictions",
                        lambda predictor, paths, *a, **k: (seen.extend(map(str, paths)), original(predictor, paths, *a, **k))[1])
    code, _, err = cli("predict", data / "test", "--model", run, "--out", cut, "--coverage", "0.9", "--workers", "0")
    assert code == 0, err
    assert len(seen) == 24 - kept and f"{kept} already there, {24 - kept} predicted now" in err
    assert cut.read_text() == text  # the torn line replaced, the file as a run never killed writes it


def test_out_refuses_another_models_file_and_bad_options(cli, toy_run, tmp_path):
    data, run = toy_run
    out = tmp_path / "p.csv"
    assert cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0")[0] == 0
    code, _, err = cli("predict", data / "test", "--model", run, "--out", out, "--coverage", "0.9")
    assert code == 1 and "holds predictions with other columns" in err and "--force" in err
    assert cli("predict", data / "test", "--model", run, "--out", out, "--coverage", "0.9", "--force",
               "--workers", "0")[0] == 0
    assert lines(out)[0].endswith(",prediction_set,coverage,model,error,decoding,sha256")
    for extra, message in ((["--json"], "--json prints one document"), (["--report", tmp_path / "r.html"],
                           "--report holds every image"), (["--explain"], "--explain with a .csv")):
        code, _, err = cli("predict", data / "test", "--model", run, "--out", out, *extra)
        assert code == 2 and message in err, err
    code, _, err = cli("predict", data / "test", "--model", run, "--out", tmp_path / "p.txt")
    assert code == 2 and "unknown format '.txt'" in err


def test_images_are_encoded_in_growing_chunks_and_written_as_they_come(cli, toy_run, tmp_path, monkeypatch):
    from vipcli import features, predict as predict_module

    data, run = toy_run
    out = tmp_path / "p.jsonl"
    monkeypatch.setattr(predict_module, "FIRST_CHUNK", 4)
    monkeypatch.setattr(predict_module, "CHUNK", 8)
    chunks, lines_before = [], []
    original = features.encode_images

    def encode(backbone, paths, *args, **kwargs):
        lines_before.append(len(lines(out)) if out.exists() else 0)
        chunks.append(len(paths))
        return original(backbone, paths, *args, **kwargs)

    monkeypatch.setattr(features, "encode_images", encode)
    assert cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0")[0] == 0
    assert chunks == [4, 8, 8, 4]  # never more than one chunk's features held
    assert lines_before == [0, 4, 12, 20]  # each chunk's records were on disk before the next was encoded
    assert len(lines(out)) == 24


def test_a_printed_prediction_encodes_in_whole_chunks(cli, toy_run, monkeypatch):
    """`vip predict` without --out shows nothing before the end: its first chunk is a whole one, so the decoding
    workers start once per CHUNK images, not three times for 24 (4, 8, then the rest)."""
    from vipcli import features, predict as predict_module

    data, run = toy_run
    monkeypatch.setattr(predict_module, "FIRST_CHUNK", 4)
    monkeypatch.setattr(predict_module, "CHUNK", 16)
    chunks = []
    original = features.encode_images

    def encode(backbone, paths, *args, **kwargs):
        chunks.append(len(paths))
        return original(backbone, paths, *args, **kwargs)

    monkeypatch.setattr(features, "encode_images", encode)
    code, stdout, _ = cli("predict", data / "test", "--model", run, "--workers", "0", "--json")
    assert code == 0 and len(json.loads(stdout)["predictions"]) == 24
    assert chunks == [16, 8]  # still never more than one chunk's features held


def test_predict_under_torchrun_needs_out(cli, toy_run, monkeypatch):
    data, run = toy_run
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    code, _, err = cli("predict", data / "test", "--model", run)
    assert code == 2 and "under torchrun (2 processes) needs --out" in err


@pytest.mark.parametrize("env, named", [({}, "MASTER_ADDR and MASTER_PORT are not set"),
                                        ({"MASTER_ADDR": "127.0.0.1"}, "MASTER_PORT is not set"),
                                        ({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "abc"}, "MASTER_PORT 'abc'")])
def test_a_world_without_a_rendezvous_address_is_one_usage_line(cli, toy_run, tmp_path, monkeypatch, env, named):
    data, run = toy_run
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": None, "MASTER_PORT": None, **env}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    code, _, err = cli("predict", data / "test", "--model", run, "--out", tmp_path / "p.jsonl")
    assert code == 2 and err.count("error:") == 1 and named in err and "bug in vip" not in err, err
    assert "torchrun" in err and list(tmp_path.iterdir()) == []  # no lock or part file left


def test_a_process_that_never_joins_within_the_barrier_timeout_is_one_error_line(cli, toy_run, tmp_path,
                                                                                  monkeypatch):
    """README's use of VIP_BARRIER_HOURS (a node that never joins fails within the job's time limit) ended
    in "unexpected DistStoreError ... this is a bug in vip"."""
    import socket

    data, run = toy_run
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                        "VIP_BARRIER_HOURS": "0.0005"}.items():  # 1.8 s; rank 1 never starts
        monkeypatch.setenv(name, value)
    code, _, err = cli("predict", data / "test", "--model", run, "--out", tmp_path / "p.jsonl")
    assert code == 1 and err.count("error:") == 1 and "bug in vip" not in err, err
    assert f"rank 0 of 2 could not join the others at 127.0.0.1:{port} within 0.0005 hours" in err
    assert "raise VIP_BARRIER_HOURS" in err and list(tmp_path.iterdir()) == []  # no lock or part file left


BARRIER_SCRIPT = """
import os, sys, time
from vipcli import distributed
from vipcli.errors import VipError

world = distributed.join()
if world.rank == 1:
    if sys.argv[1] == "stops":
        os._exit(3)  # a rank that fails (or is killed) before it reaches the barrier
    time.sleep(8)  # a rank that is still working when rank 0's wait runs out
try:
    distributed.barrier(world, "the end of encoding")
except VipError as error:
    print(error)
"""


@needs_gloo
@pytest.mark.parametrize("other", ["stops", "hangs"])
def test_a_failed_wait_at_a_barrier_is_one_error_line(tmp_path, other):
    """A rank whose wait at a barrier failed (after every rank had joined) ended in "unexpected RuntimeError
    ... [/__w/pytorch/.../pair.cc:561] Connection closed by peer ... GLHF!" as a bug in vip."""
    script = tmp_path / "barrier.py"
    script.write_text(BARRIER_SCRIPT)
    environment = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
                   "VIP_BARRIER_HOURS": "0.001", "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath()}  # 3.6 s
    ranks = [subprocess.Popen([sys.executable, str(script), other], env={**environment, "RANK": str(rank)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    said = ranks[0].communicate(timeout=120)[0].strip()
    ranks[1].communicate(timeout=120)
    assert said.startswith("rank 0 of 2 "), said
    if other == "stops":
        assert said.startswith("rank 0 of 2 lost another rank at the end of encoding: it stopped first ("), said
        assert "the other rank's own error line says why" in said
        assert "where it printed one; a rank killed by a signal" in said  # kill -9 and the OOM killer leave none
    else:
        assert said.startswith("rank 0 of 2 waited 0.001 hours at the end of encoding for the other ranks"), said
        assert "raise VIP_BARRIER_HOURS" in said
    assert "pair.cc" not in said and "GLHF" not in said and "\n" not in said


LOST_RANK_SCRIPT = """
import os, signal, sys, time
import vipcli.train
from vipcli import distributed
from vipcli.cli.main import run

lost, how = int(sys.argv[1]), sys.argv[2]


def wait_for_every_rank(config):  # every rank joins, then waits at a barrier for rank `lost`
    world = distributed.join()
    if world.rank == lost:
        if how == "killed":
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9, the out-of-memory killer
        time.sleep(60)  # hangs: it runs (and beats) but never comes; torchrun stops it once another rank failed
    distributed.barrier(world, "the end of encoding")


vipcli.train.check_config = wait_for_every_rank
sys.argv = ["vip", *sys.argv[3:]]
run()
"""


@needs_gloo
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ranks of a node find each other through /proc")
@pytest.mark.parametrize("lost, how, said", [
    (0, "killed", r"rank [123] of 4 lost rank 0 at the end of encoding: it was killed by a signal"  # the first rank
                  r"|rank 0 of 4 was killed by a signal .* so torchrun stopped the other ranks"),  # or its SIGTERM, first
    (3, "hangs", r"rank [012] of 4 waited 0.002 hours at the end of encoding for the other ranks, which did not come"),
])
def test_ranks_of_a_node_that_fail_the_same_wait_print_one_line(toy_run, tmp_path, lost, how, said):
    """The ranks of a node waiting at a barrier for one that was killed or hung each printed the same line: 3 for 4
    processes, 7 for 8. One of them now says it, the others exit with the same code in silence."""
    import re

    data, _ = toy_run
    script = tmp_path / "lost_rank.py"
    script.write_text(LOST_RANK_SCRIPT)
    started = time.monotonic()
    job = torchrun([lost, how, "train", "--data", data, "--backbone", "toy", "--out", tmp_path / "run"], tmp_path,
                   tmp_path / "cache", script=[str(script)], processes=4, VIP_BARRIER_HOURS="0.002")  # 7.2 s
    lines = [line for line in job.stderr.splitlines() if line.startswith("error:")]
    assert job.returncode != 0 and len(lines) == 1, job.stderr
    assert re.match(f"error: (?:{said})", lines[0]), lines[0]
    assert not (tmp_path / "run").exists() and time.monotonic() - started < 120


STOPPED_RANK_SCRIPT = """
import os, signal, subprocess, sys, time
import vipcli.train
from vipcli import distributed, heartbeats
from vipcli.cli.main import run

stopped, late = int(sys.argv[1]), int(sys.argv[2])
heartbeats.BEAT_S, heartbeats.POLL_S = 0.1, 0.2
heartbeats.STUCK_S = 30.0 if int(os.environ["RANK"]) == late else 1.0  # rank `late` would see it 29 s late


def wait_for_every_rank(config):  # every rank joins; rank `stopped` is stopped (kill -STOP), the others wait for it
    world = distributed.join()
    if world.rank == stopped:  # resumed (kill -CONT) after torchrun sent it SIGTERM, which then ends it
        subprocess.Popen(["sh", "-c", f"sleep 6; kill -CONT {os.getpid()}"], start_new_session=True)
        time.sleep(0.5)  # it beats first
        os.kill(os.getpid(), signal.SIGSTOP)
        time.sleep(60)
    distributed.barrier(world, "the end of encoding")


vipcli.train.check_config = wait_for_every_rank
sys.argv = ["vip", *sys.argv[3:]]
run()
"""


@needs_gloo
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ranks of a node find each other through /proc")
@pytest.mark.parametrize("stopped, late, speaker", [
    (3, 0, "[12]"),  # rank 0, the expected speaker, is slower to see it: torchrun's SIGTERM reaches it first
    (0, -1, "1"),  # rank 0 stopped, then resumed: the SIGTERM torchrun sent it meanwhile ends it
])
def test_ranks_of_a_node_waiting_for_a_stopped_rank_print_one_line(toy_run, tmp_path, stopped, late, speaker):
    """A rank stopped with kill -STOP is named by one waiting rank of its node; the others said `terminated
    (SIGTERM)` when torchrun's SIGTERM reached them before they saw it themselves, or when they were resumed: a
    second line for one failure. They now exit non-zero in silence."""
    import re

    data, _ = toy_run
    script = tmp_path / "stopped_rank.py"
    script.write_text(STOPPED_RANK_SCRIPT)
    job = torchrun([stopped, late, "train", "--data", data, "--backbone", "toy", "--out", tmp_path / "run"], tmp_path,
                   tmp_path / "cache", script=[str(script)], processes=4)
    lines = [line for line in job.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, job.stderr
    assert re.match(f"error: rank {speaker} of 4 stopped waiting at the end of encoding for rank {stopped}, whose "
                    "process has not run for", lines[0]), lines[0]
    exit_codes = re.findall(r"rank\s+: (\d) \(local_rank.*\n\s+exitcode\s+: (-?\d+)", job.stderr)
    assert job.returncode != 0 and sorted(rank for rank, _ in exit_codes) == ["0", "1", "2", "3"], job.stderr
    assert all(int(code) != 0 for _, code in exit_codes) and not (tmp_path / "run").exists()


def test_a_rank_that_fails_a_wait_leaves_the_line_to_the_first_of_its_node_that_says_it(tmp_path):
    """The ranks of a node that fail the same wait say it once (the mark of the first one silences the others); a
    rank waits for the one expected to say it at most node_ranks.SAY_WAIT_S (it may be the rank that stopped); another
    wait that fails after it is silent too (its consequence); one without torchrun's folders is said as before."""
    from vipcli.node_ranks import SAY_WAIT_S, WAIT_MARK, say_once_per_node

    attempt = tmp_path / "attempt_0"
    for local_rank in range(3):
        (attempt / str(local_rank)).mkdir(parents=True)

    def said_by(rank: int, key: str, waited_for=(), folders: bool = True) -> bool:
        environ = {"RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "3"}
        if folders:
            environ["TORCHELASTIC_ERROR_FILE"] = str(attempt / str(rank) / "error.json")
        said = []
        say_once_per_node(lambda: said.append(rank), key, waited_for, environ)
        return said == [rank]

    started = time.monotonic()
    assert said_by(1, "the end of encoding: stopped rank 0", (0,))  # rank 0, which stopped, is not waited for
    assert time.monotonic() - started < SAY_WAIT_S
    assert not said_by(2, "the end of encoding: stopped rank 0", (0,))  # said on this node: silent
    assert not said_by(0, "the end of encoding: lost a rank")  # a wait failing after it, as a consequence: silent
    assert said_by(2, "the end of predicting: timed out", folders=False)  # no torchrun folders: as before
    (attempt / WAIT_MARK).unlink()  # the next attempt
    started = time.monotonic()
    assert said_by(1, "the end of predicting: timed out")  # rank 0, expected, never says it
    assert SAY_WAIT_S <= time.monotonic() - started < SAY_WAIT_S + 1
    assert not said_by(0, "the end of predicting: timed out")


def test_unreadable_images_are_recorded_and_fail_the_command(cli, toy_run, tmp_path):
    data, run = toy_run
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    out = tmp_path / "p.jsonl"
    code, _, err = cli("predict", data / "test" / "nevus", broken, "--model", run, "--out", out, "--workers", "0")
    assert code == 1 and f"1 of 13 images could not be read; {out} records why (fix those files and rerun" in err
    last = json.loads(lines(out)[-1])
    assert last["path"] == str(broken) and "error" in last and "label" not in last


def test_a_rerun_tries_unreadable_images_again_and_drops_removed_ones(cli, toy_run, tmp_path):
    """Both fixes the error names work: a repaired file is predicted on the next run, and a removed one
    leaves the file (its error record dropped) instead of making the rerun refuse it."""
    import shutil

    data, run = toy_run
    folder = tmp_path / "images"
    shutil.copytree(data / "test" / "nevus", folder)
    good = sorted(folder.iterdir())[0]
    broken = folder / "zz_broken.png"
    broken.write_bytes(b"not a png")
    out = tmp_path / "p.jsonl"
    assert cli("predict", folder, "--model", run, "--out", out, "--workers", "0")[0] == 1
    shutil.copyfile(good, broken)  # repaired
    code, _, err = cli("predict", folder, "--model", run, "--out", out, "--workers", "0")
    assert code == 0 and "12 already there, 1 predicted now" in err, err
    records = [json.loads(line) for line in lines(out)]
    assert len(records) == 13 and all("label" in r for r in records)
    assert records[-1]["path"] == str(broken)
    broken.write_bytes(b"broken again")
    assert cli("predict", folder, "--model", run, "--out", out, "--workers", "0", "--force")[0] == 1
    broken.unlink()  # removed from the input
    code, _, err = cli("predict", folder, "--model", run, "--out", out, "--workers", "0")
    assert code == 0 and "1 record in" in err and "left out of it" in err, err
    records = [json.loads(line) for line in lines(out)]
    assert len(records) == 12 and all("label" in r for r in records)


def test_merge_orders_records_of_out_and_parts_and_removes_parts(tmp_path):
    from vipcli.prediction_files import RecordFormat, finish_output, part_file

    form = RecordFormat("jsonl", ("a", "b"), None)
    out = tmp_path / "p.jsonl"
    record = lambda p: json.dumps({"path": p, "label": "a", "probability": 1.0, "probabilities": {"a": 1.0, "b": 0.0}})
    out.write_text(record("x3") + "\n" + record("x0") + "\n")
    part_file(out, 1, 2).write_text(record("x2") + "\n" + record("x1")[:9])  # rank 1 of 2, killed mid-line
    part_file(out, 0, 3).write_text(record("x1") + "\n" + record("gone") + "\n")  # from a run of 3 ranks
    summary = finish_output(out, ["x0", "x1", "x2", "x3"], form)
    assert [json.loads(line)["path"] for line in lines(out)] == ["x0", "x1", "x2", "x3"]
    assert (summary.records, summary.missing, summary.dropped) == (4, 0, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]


# --- torchrun: two CPU ranks with gloo --------------------------------------------------------------


@needs_gloo
def test_two_ranks_write_what_one_process_writes(cli, toy_run, tmp_path):
    data, run = toy_run
    single = tmp_path / "single.jsonl"
    assert cli("predict", data / "test", "--model", run, "--out", single, "--coverage", "0.9",
               "--workers", "0")[0] == 0
    merged = tmp_path / "merged.jsonl"
    done = torchrun(["predict", data / "test", "--model", run, "--out", merged, "--coverage", "0.9",
                     "--workers", "0"], tmp_path, tmp_path / "own-cache")  # features computed afresh
    assert done.returncode == 0, done.stderr
    assert merged.read_bytes() == single.read_bytes()
    assert "24 of 24 images, 24 predicted now by 2 processes" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if "merged" in p.name) == ["merged.jsonl"]  # parts removed


@needs_gloo
def test_resume_after_a_killed_rank_predicts_each_image_once(cli, toy_run, tmp_path):
    data, run = toy_run
    single = tmp_path / "single.jsonl"
    assert cli("predict", data / "test", "--model", run, "--out", single, "--workers", "0")[0] == 0
    out, log = tmp_path / "preds.jsonl", tmp_path / "recorded.log"
    args = ["predict", data / "test", "--model", run, "--out", out, "--workers", "0"]
    killed = torchrun(args, tmp_path, tmp_path / "cache", ["--no-python", sys.executable, str(HOOKS)],
                      VIP_TEST_KILL="1:3")
    assert killed.returncode != 0 and not out.exists()
    parts = sorted(tmp_path.glob("preds.jsonl.rank*-of-00002.part"))
    finished = [line for part in parts for line in part.read_text().split("\n")[:-1]]  # complete lines
    assert 3 <= len(finished) < 24 and not parts[-1].read_text().endswith("\n")  # rank 1 left a torn line
    resumed = torchrun(args, tmp_path, tmp_path / "cache", ["--no-python", sys.executable, str(HOOKS)],
                       VIP_TEST_RECORD_LOG=str(log))
    assert resumed.returncode == 0, resumed.stderr
    predicted_again = lines(log)
    before = {json.loads(line)["path"] for line in finished}
    assert len(predicted_again) == len(set(predicted_again)) == 24 - len(finished)
    assert not before & set(predicted_again)
    assert out.read_bytes() == single.read_bytes()
    assert f"{len(finished)} already there, {24 - len(finished)} predicted now by 2 processes" in resumed.stderr


@needs_gloo
def test_training_encodes_on_every_rank_and_trains_on_rank_zero(toy_run, tmp_path):
    from safetensors import safe_open

    data, _ = toy_run
    cache = tmp_path / "cache"
    done = torchrun(["train", "--data", data, "--backbone", "toy", "--shots", "all", "--epochs", "1", "--views", "2",
                     "--workers", "0", "--out", tmp_path / "run"], tmp_path, cache)
    assert done.returncode == 0, done.stderr
    images = sum(1 for _ in data.rglob("*.png"))
    assert "rank 1: encoded" in done.stderr and "rank 0 trains" in done.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["timings"]["encoded_views"] == 0  # rank 0 found every feature in the cache
    entries = list(cache.rglob("*.safetensors"))
    assert len(entries) == images and not list(cache.rglob("*.tmp"))
    from vipcli.features import FeatureCache
    from vipcli.registry import load_backbone

    checker = FeatureCache(cache, load_backbone("toy"))
    for entry in entries:  # whole entries, each of its own image, passing the cache's own read check
        with safe_open(str(entry), "pt") as handle:
            header, tensors = handle.metadata(), {name: handle.get_tensor(name) for name in handle.keys()}
        assert checker.entry_problem(header, tensors, Path(header["path"])) == ""
        assert checker.entry_file(Path(header["path"])) == entry


@needs_gloo
def test_a_run_trained_under_torchrun_is_byte_for_byte_the_one_process_run(cli, toy_run, tmp_path, monkeypatch):
    """README: on the CPU the run folder of two ranks is that of one process at the same seed, byte for byte
    (model.safetensors, run.yaml, split.json), and metrics.json differs only in its timings, thread count and
    finishing time. Each with a cache of its own: the two ranks encode the features afresh, each its share."""
    data, _ = toy_run
    args = ["train", "--data", data, "--backbone", "toy", "--shots", "4", "--epochs", "3", "--views", "2",
            "--workers", "0", "--seed", "2", "--out", "run"]
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
    monkeypatch.setenv("VIP_CACHE_DIR", str(tmp_path / "one-cache"))
    monkeypatch.chdir(tmp_path / "one")
    assert cli(*args)[0] == 0
    done = torchrun(args, tmp_path / "two", tmp_path / "two-cache")
    assert done.returncode == 0, done.stderr
    one, two = tmp_path / "one" / "run", tmp_path / "two" / "run"
    for name in ("model.safetensors", "run.yaml", "split.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name

    def measured(run):
        metrics = json.loads((run / "metrics.json").read_text())
        return {key: value for key, value in metrics.items() if key not in ("timings", "torch_threads", "finished_at")}
    assert measured(one) == measured(two) and "test" in measured(one)


@needs_gloo
def test_an_unwritable_cache_under_torchrun_is_told_as_it_is(toy_run, tmp_path):
    data, _ = toy_run
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "features").write_text("a file where the features folder goes")
    done = torchrun(["train", "--data", data, "--backbone", "toy", "--shots", "2", "--epochs", "1", "--views", "2",
                     "--workers", "0", "--out", tmp_path / "run"], tmp_path, cache)
    assert done.returncode == 0, done.stderr
    assert "rank 1: encoded" in done.stderr and "into the feature cache" not in done.stderr  # nothing went there
    assert "the feature cache could not be written; rank 0 encodes the missing ones itself" in done.stderr
    assert "cannot write the feature cache" in done.stderr and "--no-cache" not in done.stderr  # refused here
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["timings"]["encoded_views"] > 0  # rank 0 did encode them


@needs_gloo
def test_a_benchmark_resumed_under_torchrun_says_so_once_and_matches_one_process(cli, toy_run, tmp_path, monkeypatch):
    import csv

    data, _ = toy_run
    monkeypatch.setenv("VIP_CACHE_DIR", str(tmp_path / "one-cache"))
    sweep = ["benchmark", "--data", data, "--backbone", "toy", "--methods", "linear-probe", "--shots", "2",
             "--workers", "0"]
    assert cli(*sweep, "--seeds", "1", "--out", tmp_path / "sweep")[0] == 0  # one process: seed 1
    assert cli(*sweep, "--seeds", "1,2", "--out", tmp_path / "ref")[0] == 0
    done = torchrun([*sweep, "--seeds", "1,2", "--out", tmp_path / "sweep"], tmp_path, tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("resuming") == 1 and "1 finished rows skipped, 1 to run" in done.stderr, done.stderr

    def rows(folder):
        return [{k: v for k, v in row.items() if k not in ("fit_s", "finished_at")}
                for row in csv.DictReader((folder / "results.csv").open(encoding="utf-8"))]
    assert rows(tmp_path / "sweep") == rows(tmp_path / "ref") and len(rows(tmp_path / "ref")) == 2


@pytest.mark.parametrize("visible, said", [(1, "only 1 is visible"), (2, "only 2 are visible")])
def test_more_ranks_on_a_node_than_gpus_is_one_line_in_plain_words(monkeypatch, visible, said):
    """`torchrun --nproc-per-node 2` on a machine with one GPU: `rank 1 wants GPU 1 but only 1 are visible`."""
    import torch

    from vipcli.distributed import World, rank_device
    from vipcli.errors import UsageError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    with pytest.raises(UsageError) as raised:
        rank_device("auto", World(visible, visible + 1, visible))
    assert str(raised.value.message) == f"rank {visible} wants GPU {visible} but {said}"


def test_a_rank_that_encoded_one_image_says_image():
    """More ranks than images: `rank 3: encoded 1 images into the feature cache`."""
    from vipcli.distributed import World, handed_over

    assert handed_over(World(3, 5, 3), 1, True) == "rank 3: encoded 1 image into the feature cache; rank 0 trains"
    assert handed_over(World(4, 5, 4), 0, False).startswith("rank 4: encoded 0 images, but the feature cache")


def test_shared_encoding_covers_what_train_and_benchmark_read_first(toy_run):
    from vipcli.data import few_shot_order, few_shot_union, load_dataset
    from vipcli.distributed import training_jobs

    data, _ = toy_run
    dataset = load_dataset(data, seed=1)
    train = dataset.splits["train"]
    (few, views, center), (evaluated, eval_views, eval_center) = training_jobs(dataset, 3, (1, 2), 8, False)
    orders = [few_shot_order(train, 2, seed) for seed in (1, 2)]
    assert set(few) == {s.path for s in few_shot_union(train, orders, 3)}  # benchmark's first pass
    assert (views, center, eval_views, eval_center) == (8, False, 0, True)
    assert evaluated == [s.path for s in dataset.splits["val"] + dataset.splits["test"]]
    assert training_jobs(dataset, None, (1,), 2, True)[0][0] == [s.path for s in train]  # full data: every image


@pytest.mark.parametrize("local_rank, joined, own, shared, said", [
    (0, False, False, False, "data folder not found"),  # before joining: the node's first process says it
    (1, False, False, False, None),  # ... and the others exit in silence
    (1, False, True, False, "rank 3 of 4: data folder not found"),  # unless it is this process's own
    (1, True, False, False, "rank 3 of 4: data folder not found"),  # after joining every failure is its own
    (1, True, False, True, None),  # Ctrl-C reaches every process: each node's first one says it
])
def test_each_failure_is_said_once_per_node_or_by_its_own_process(monkeypatch, local_rank, joined, own, shared,
                                                                 said):
    from vipcli import distributed

    for name, value in {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": str(local_rank)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(distributed, "_has_joined", joined)
    assert distributed.error_for_this_process("data folder not found", own, shared) == said


@pytest.mark.parametrize("world_size", ["2", "1"])
def test_a_rank_stopped_by_sigterm_under_torchrun_says_where_to_read_why(cli, toy_run, tmp_path, monkeypatch,
                                                                          world_size):
    """torchrun stops every rank with SIGTERM once one fails; where that one was killed (kill -9, the out-of-memory
    killer) it printed nothing, and rank 0's `terminated (SIGTERM); nothing half-written ...` was all vip said."""
    import signal

    import vipcli.train

    data, _ = toy_run
    for name, value in {"WORLD_SIZE": world_size, "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(vipcli.train, "check_config", terminated)
    code, _, err = cli("train", "--data", data, "--backbone", "toy", "--out", tmp_path / "run")
    said = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 143 and len(said) == 1, err
    assert said[0].startswith("error: terminated (SIGTERM); nothing half-written was left behind")
    assert ("named under 'Root Cause' in torchrun's report" in said[0]) == (world_size == "2"), said[0]


@pytest.mark.parametrize("local_rank, waits", [(1, True), (0, False)])
def test_a_process_that_leaves_a_shared_mistake_to_the_first_one_waits_before_exiting(cli, monkeypatch, local_rank,
                                                                                      waits):
    """torchrun stops every process once one exits: a silent process that exited at once got the node's first
    process stopped before it printed the mistake (`error: terminated (SIGTERM)` instead); it now waits."""
    from vipcli import distributed

    for name, value in {"WORLD_SIZE": "2", "RANK": str(local_rank), "LOCAL_RANK": str(local_rank)}.items():
        monkeypatch.setenv(name, value)
    waited = []
    monkeypatch.setattr("time.sleep", waited.append)
    code, _, err = cli("train", "--data", "no-such-folder", "--backbone", "toy")
    assert code == 1 and waited == ([distributed.SILENT_EXIT_GRACE_S] if waits else [])
    assert ("data folder not found" in err) is not waits, err


@needs_gloo
def test_a_mistake_every_process_shares_is_one_error_line_under_torchrun(toy_run, tmp_path):
    """A bad option or a missing data folder under `torchrun --nproc-per-node 8` printed 8 `error:` lines."""
    data, run = toy_run
    for args, words in ((["predict", data / "test", "--model", run, "--out", tmp_path / "p.jsonl", "--coverage", "x"],
                         "--coverage must be a number"),
                        (["train", "--data", tmp_path / "missing", "--backbone", "toy", "--out", tmp_path / "run"],
                         "data folder not found")):
        done = torchrun(args, tmp_path, tmp_path / "cache")
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode != 0 and len(errors) == 1 and words in errors[0], done.stderr


@pytest.mark.parametrize("key, here, there, said", [
    ("out", "/b/p.jsonl", "/a/p.jsonl", "writes --out /b/p.jsonl, rank 0 /a/p.jsonl"),
    ("lock", "", "123 node01\n", "does not see the lock file that rank 0 holds beside --out (rank 0: pid 123 on host "
                                 "node01; here: no lock file): --out is not on a filesystem this node shares"),
    ("lock", "9 node02\n", "123 node01\n", "(rank 0: pid 123 on host node01; here: pid 9 on host node02)"),
    ("images", "24 ab12", "23 cd34", "finds other images than rank 0 (24 here, 23 on rank 0)"),
    ("records", "--coverage 0.8", "--coverage 0.9", "writes other records than rank 0 (--coverage 0.8 here; "
                                                    "--coverage 0.9 on rank 0)"),
    ("images", "24 ab12", "24 cd34", "finds other images than rank 0 (24 on each, but other files or in another "
                                     "order)"),
    ("command", "benchmark", "train", "runs `vip benchmark`, rank 0 `vip train`"),
    ("views", "2 augmented views of each training image", "4 augmented views of each training image",
     "encodes other views of the images than rank 0 (2 augmented views of each training image here; 4 augmented "
     "views of each training image on rank 0)"),
    ("backbone", "toy-12ab", "toy-34cd", "encodes features under another backbone key than rank 0 (toy-12ab here, "
                                         "toy-34cd on rank 0: another backbone or weights"),
    ("rows", "0 of 2", "2 of 2", "finds 0 of 2 rows still to run, rank 0 2 of 2 (their --out folders hold other"),
])
def test_a_rank_that_sees_other_files_than_rank_zero_says_what_differs(key, here, there, said):
    from vipcli.distributed import view_problem

    rank_zero = {"out": "/a/p.jsonl", "lock": "123 node01\n", "records": "--coverage 0.9", "images": "24 ab12",
                 "command": "train", "views": "2 augmented views of each training image", "backbone": "toy-34cd",
                 "rows": "2 of 2"}
    assert view_problem(dict(rank_zero), rank_zero) == ""
    assert said in view_problem({**rank_zero, key: here}, {**rank_zero, key: there})


@needs_gloo
def test_nodes_that_write_different_out_files_are_refused_before_predicting(toy_run, tmp_path):
    """Two nodes whose --out differed (another path, or a folder that is not shared) each predicted their
    share; rank 0 then said "30 of 60 images have no record ... (rerun to resume)", and every rerun did the same."""
    data, run = toy_run
    for node in ("a", "b"):
        (tmp_path / node).mkdir()
    codes, said = two_nodes([["predict", data / "test", "--model", run, "--out", tmp_path / node / "p.jsonl",
                              "--workers", "0"] for node in ("a", "b")], [{"VIP_CACHE_DIR": str(tmp_path / "cache")}] * 2)
    assert codes == [1, 1], said
    assert said[1].startswith(f"error: rank 1 of 2 writes --out {tmp_path / 'b' / 'p.jsonl'}, rank 0 "
                              f"{tmp_path / 'a' / 'p.jsonl'} ("), said[1]
    assert "lost another rank at the start of predicting" in said[0] and said[1].count("\n") == 1
    assert [p for node in ("a", "b") for p in (tmp_path / node).iterdir()] == []  # nothing predicted, nothing left


@needs_gloo
def test_training_ranks_started_with_other_settings_are_refused_before_encoding(toy_run, tmp_path):
    """Two nodes whose `vip train` differed (here --seed; equally other data, --shots, --views or weights) each
    encoded their own images; rank 0 then encoded its share again, warned that the cache was not shared (it was),
    and trained with exit code 0, rank 1's settings ignored without a word."""
    data, _ = toy_run
    args = ["train", "--data", data, "--backbone", "toy", "--shots", "4", "--epochs", "1", "--workers", "0",
            "--out", tmp_path / "run"]
    codes, said = two_nodes([args, [*args, "--seed", "3"]], [{"VIP_CACHE_DIR": str(tmp_path / "cache")}] * 2)
    assert codes == [1, 1], said
    assert said[1].startswith("error: rank 1 of 2 finds other images than rank 0 ("), said[1]
    assert said[1].count("\n") == 1 and "lost another rank at the end of encoding" in said[0], said
    assert "finds none of the" not in said[0] and not (tmp_path / "run").exists()


@needs_gloo
def test_a_benchmark_rank_with_no_rows_to_run_does_not_leave_rank_zero_waiting(toy_run, tmp_path):
    """Rank 1's --out held every row of the sweep, rank 0's none: rank 1 exited 0 without joining the group, and
    rank 0 waited at its join for VIP_BARRIER_HOURS (24 hours by default) before one line."""
    data, _ = toy_run
    sweep = ["benchmark", "--data", data, "--backbone", "toy", "--methods", "linear-probe", "--shots", "2",
             "--seeds", "1", "--workers", "0", "--out"]
    env = {"VIP_CACHE_DIR": str(tmp_path / "cache"), "VIP_BARRIER_HOURS": "0.01"}  # the old wait: 36 s, not 24 h
    done = subprocess.run([sys.executable, "-m", "vipcli", *map(str, sweep), tmp_path / "done"], capture_output=True,
                          text=True, env={**os.environ, **env, "CUDA_VISIBLE_DEVICES": ""}, timeout=120)
    assert done.returncode == 0, done.stderr
    codes, said = two_nodes([[*sweep, tmp_path / "new"], [*sweep, tmp_path / "done"]], [env, env])
    assert codes == [1, 1], said
    assert said[1].startswith(f"error: rank 1 of 2 writes --out {tmp_path / 'done'}, rank 0 {tmp_path / 'new'} ("), said
    assert "lost another rank at the end of encoding" in said[0] and "could not join" not in said[0], said
    assert not (tmp_path / "new").exists()
    codes, said = two_nodes([[*sweep, tmp_path / "done"]] * 2, [env, env])  # both have nothing to run: both done
    assert codes == [0, 0] and "0 to run" in said[0] and not said[1].strip(), said


NOTHING_TO_ENCODE_SCRIPT = """
import os, sys
from pathlib import Path

import torch

from vipcli import distributed
from vipcli.errors import VipError
from vipcli.features import FeatureCache
from vipcli.registry import load_backbone

world = distributed.world_from_env()
run = {"command": "benchmark", "out": "/sweep", "rows": "0 of 2"}  # alike on both ranks
try:
    if world.main:  # rank 0 encodes (its split.json to be written anew, say); rank 1 has nothing to encode
        backbone = load_backbone("toy", None, None, torch.device("cpu"))
        images = sorted(Path(sys.argv[1]).rglob("*.png"))[:4]
        distributed.encode_shared(backbone, world, [(images, 0, True)], FeatureCache(Path(os.environ["VIP_CACHE_DIR"]),
                                  backbone), 4, 0, run=run)
    else:
        distributed.agree_without_encoding(world, run)
except VipError as error:
    print(error.message)
    sys.exit(1)
"""


@needs_gloo
def test_a_rank_with_nothing_to_encode_is_refused_where_rank_zero_encodes(toy_run, tmp_path):
    """Two benchmark ranks alike in --out and rows still to run, rank 0 with images to encode and rank 1 with none:
    rank 1 passed the check, its barrier met rank 0's at the end of encoding, and rank 0 warned that the cache was
    not shared (it was) and encoded rank 1's share itself."""
    data, _ = toy_run
    script = tmp_path / "nothing.py"
    script.write_text(NOTHING_TO_ENCODE_SCRIPT)
    done = torchrun([data], tmp_path, tmp_path / "cache", script=[str(script)], VIP_BARRIER_HOURS="0.01")
    assert done.returncode != 0, done.stdout + done.stderr
    assert "finds other images than rank 0 (0 here, 4 on rank 0)" in done.stdout, done.stdout + done.stderr
    assert "finds none of the" not in done.stdout + done.stderr


def test_the_slurm_example_gives_its_step_the_cores_and_matches_readme():
    """Since Slurm 22.05 srun does not inherit sbatch's --cpus-per-task: the example's torchrun, its 4 ranks and
    their 7 decoding workers each ran on one core. README shows the same lines as the file."""
    root = Path(__file__).parent.parent
    script = (root / "examples" / "slurm" / "predict.sbatch").read_text(encoding="utf-8")
    assert 'srun --cpus-per-task "$SLURM_CPUS_PER_TASK" torchrun' in script
    readme = (root / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("### Slurm"):readme.index("### Training and benchmarks")]
    shown = block[block.index("```bash") + len("```bash"):block.index("```", block.index("```bash") + 7)]
    lines_of_script = script.splitlines()
    assert all(line in lines_of_script for line in shown.strip().splitlines())


def test_a_part_file_that_cannot_be_read_is_one_error_line(cli, toy_run, tmp_path):
    """A folder named like a part file (FILE.rank00001-of-00002.part) ended in "unexpected IsADirectoryError
    ... this is a bug in vip"."""
    data, run = toy_run
    part = tmp_path / "p.jsonl.rank00001-of-00002.part"
    part.mkdir()
    code, _, err = cli("predict", data / "test", "--model", run, "--out", tmp_path / "p.jsonl", "--workers", "0")
    assert code == 1 and err.count("error:") == 1 and "bug in vip" not in err, err
    assert f"cannot read {part} (" in err and "move it out of the folder, or pass another --out" in err


@needs_gloo
def test_unreadable_images_in_one_ranks_share_are_said_of_the_merged_file_naming_no_rank(toy_run, tmp_path):
    """An unreadable image in rank 1's share ended in `error: rank 0 of 2: 1 of 25 images could not be read`:
    rank 0 was named for a file it never held. The line is about the merged file, once, naming no rank."""
    data, run = toy_run
    broken = tmp_path / "zz_broken.png"  # last in input order: rank 1's share
    broken.write_bytes(b"not a png")
    out = tmp_path / "p.jsonl"
    done = torchrun(["predict", data / "test", broken, "--model", run, "--out", out, "--workers", "0"], tmp_path,
                    tmp_path / "cache")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode != 0 and len(errors) == 1, done.stderr
    assert errors[0].startswith(f"error: 1 of 25 images could not be read; {out} records why"), errors[0]
    assert json.loads(lines(out)[-1])["path"] == str(broken)


def test_a_rank_looks_again_before_refusing_a_lock_file_a_network_filesystem_shows_late(monkeypatch):
    """Another node's new lock file may show on a network filesystem a moment late: a rank looks again for a
    few seconds before it refuses, and refuses a view that stays other."""
    import torch.distributed as dist

    from vipcli import distributed
    from vipcli.errors import VipError

    rank_zero = {"out": "/s/p.jsonl", "lock": "123 node01\n", "images": "24 ab12"}
    monkeypatch.setattr(dist, "broadcast_object_list", lambda objects, src: objects.__setitem__(0, dict(rank_zero)))
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    seen = iter([{**rank_zero, "lock": ""}, {**rank_zero, "lock": ""}, dict(rank_zero)])
    looks = []
    distributed.agree_with_rank_zero(distributed.World(1, 2, 0), lambda: looks.append(1) or next(seen))
    assert len(looks) == 3  # shown late: accepted on the third look
    monkeypatch.setattr(distributed, "VIEW_SETTLE_S", 0.05)
    with pytest.raises(VipError, match="rank 1 of 2 does not see the lock file that rank 0 holds"):
        distributed.agree_with_rank_zero(distributed.World(1, 2, 0), lambda: {**rank_zero, "lock": ""})


@needs_gloo
def test_training_on_nodes_that_do_not_share_the_feature_cache_says_so(toy_run, tmp_path):
    """Rank 1's node wrote its share into a cache rank 0 does not see: rank 0 encoded it again in silence
    (README promised `encoded 0 views`), and nothing said why the other GPUs had saved no time."""
    data, _ = toy_run
    args = ["train", "--data", data, "--backbone", "toy", "--shots", "all", "--epochs", "1", "--views", "2",
            "--workers", "0", "--out", tmp_path / "run"]
    codes, said = two_nodes([args, args], [{"VIP_CACHE_DIR": str(tmp_path / f"cache{rank}")} for rank in (0, 1)])
    assert codes == [0, 0], said
    assert "rank 1: encoded" in said[1]
    assert (f"warning: rank 0 finds none of the {len(shard_of(data, 1))} images the other ranks encoded in its "
            f"feature cache ({tmp_path / 'cache0'}), so it encodes them itself") in said[0], said[0]
    assert "VIP_CACHE_DIR at a folder every node shares" in said[0]
    codes, said = two_nodes([args[:-1] + [tmp_path / "run2"]] * 2, [{"VIP_CACHE_DIR": str(tmp_path / "cache0")}] * 2)
    assert codes == [0, 0] and "finds none" not in said[0], said  # one shared cache: nothing to say


def shard_of(data: Path, rank: int) -> list:
    """The images rank `rank` of 2 encodes for a full-data `vip train` of `data` (training, then val and test)."""
    from vipcli.data import load_dataset
    from vipcli.distributed import World, shard, training_jobs

    jobs = training_jobs(load_dataset(data, seed=1), None, (1,), 2, False)
    return [paths[i] for paths, _, _ in jobs for i in shard(len(paths), World(rank, 2, 0))]


def test_records_of_other_images_are_refused_naming_the_files_that_hold_them(tmp_path):
    """A killed torchrun run left only part files: the refusal said "p.jsonl holds records of ...", a file that
    did not exist."""
    from vipcli.errors import VipError
    from vipcli.prediction_files import check_same_images, part_file

    out = tmp_path / "p.jsonl"
    for rank in (0, 1):
        part_file(out, rank, 2).write_text("")
    with pytest.raises(VipError, match=r"^the 2 part files of .*p\.jsonl \(p\.jsonl\.rank00000-of-00002\.part, \.\.\.\) "
                                       r"hold records of 1 image that are not in this input \(e\.g\. gone\.png\)"):
        check_same_images({"gone.png", "a.png"}, ["a.png"], out)
    out.write_text("")
    with pytest.raises(VipError, match=r"p\.jsonl \(with 2 part files\) holds records of 1 image"):
        check_same_images({"gone.png"}, [], out)
    check_same_images({"a.png"}, ["a.png", "b.png"], out)  # none foreign: nothing to say


def test_part_files_a_stopped_merge_left_behind_are_removed_without_a_warning(tmp_path):
    """Rank 0 stopped between writing the merged file and removing the part files: the rerun warned "30 records
    in preds.jsonl repeated an image already recorded", though nothing was wrong."""
    from vipcli.prediction_files import RecordFormat, finish_output, part_file

    form = RecordFormat("jsonl", ("a", "b"), None)
    out = tmp_path / "p.jsonl"
    record = lambda p: json.dumps({"path": p, "label": "a", "probability": 1.0, "probabilities": {"a": 1.0, "b": 0.0}})
    out.write_text(record("x0") + "\n" + record("x1") + "\n")
    part_file(out, 1, 2).write_text(record("x1") + "\n")  # merged already, not yet removed
    summary = finish_output(out, ["x0", "x1"], form)
    assert (summary.records, summary.repeated) == (2, 0) and sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]
    out.write_text(record("x0") + "\n" + record("x0") + "\n")  # a file that repeats itself is still told
    assert finish_output(out, ["x0"], form).repeated == 1


@pytest.mark.parametrize("args", [["demo", "--out", "d"], ["cache", "clear"], ["data", "sort", "labels.csv", "--images", "x", "--out", "y"]])
def test_a_command_that_does_not_share_its_work_is_refused_under_torchrun(cli, monkeypatch, tmp_path, args):
    """`torchrun --nproc-per-node 2 -m vipcli demo` ran the demo twice at once into one folder, then rank 1
    failed with "unexpected AttributeError: 'NoneType' object has no attribute 'failures'"."""
    monkeypatch.chdir(tmp_path)
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    code, out, err = cli(*args)
    assert code == 2 and err.count("error:") == 1 and not out, err
    assert f"error: vip {args[0]} runs in one process, not under torchrun (2 processes)" in err
    assert list(tmp_path.iterdir()) == []  # nothing written
    code, out, _ = cli(*args[:1], "-h")  # help is never refused
    assert code == 0 and "Usage: vip " in out
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc-per-node 1: a world of one runs anything
    assert cli("methods", "list")[0] == 0
    monkeypatch.setenv("WORLD_SIZE", "abc")  # not torchrun's: the commands that use it say so, the others ignore it
    assert cli("methods", "list")[0] == 0


AGENT_SCRIPT = """
import os, subprocess, sys, time
env = {**os.environ, "LOCAL_RANK": sys.argv[1], "RANK": sys.argv[1], "TORCHELASTIC_ERROR_FILE": sys.argv[2],
       "TORCHELASTIC_RUN_ID": "job7"}  # as torchrun's agent sets them for each rank, not for itself
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
print(child.pid, flush=True)
time.sleep(60)  # never reaps it: a rank killed meanwhile stays a zombie, as one the agent has not polled yet
"""


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, as vip does only on Linux")
@pytest.mark.parametrize("speaker, other, said", [
    (1, "killed", "rank 0 of 2 was killed by a signal"),  # LOCAL_RANK 0 killed: the next rank says so, naming it
    (0, "killed", "rank 1 of 2 was killed by a signal"),  # ... and rank 0 names the rank that was
    (1, "running", None),  # LOCAL_RANK 0 is there to say it: silent, as before
    (1, "said", None),  # LOCAL_RANK 0 printed its line and ended: silent, as before
    (0, "said", "terminated (SIGTERM); nothing half-written"),  # a rank that printed its own line is not named
    (0, "done", "terminated (SIGTERM); nothing half-written"),  # nor one that finished its part and left
    (0, "killed starting", "terminated (SIGTERM); nothing half-written"),  # nor one torchrun ended before vip started
])
def test_a_rank_killed_by_a_signal_is_named_by_the_ranks_torchrun_stops(cli, toy_run, tmp_path, monkeypatch,
                                                                       speaker, other, said):
    """`kill -9` (or the out-of-memory killer) of rank 0 under torchrun printed nothing at all: rank 1, stopped by
    torchrun's SIGTERM, left the shared `terminated` line to LOCAL_RANK 0, which was gone. A rank that torchrun's own
    SIGTERM ended while it was still starting (before vip's handlers were in place) ends without a line too; it was
    named as killed by kill -9 or the out-of-memory killer, the cause of the stop, when it was its result."""
    import signal

    import vipcli.node_ranks
    import vipcli.train

    data, _ = toy_run
    attempt = tmp_path / "attempt_0"
    for local_rank in (0, 1):
        (attempt / str(local_rank)).mkdir(parents=True)
    lost = 1 - speaker
    agent = subprocess.Popen([sys.executable, "-c", AGENT_SCRIPT, str(lost), str(attempt / str(lost) / "error.json")],
                             stdout=subprocess.PIPE, text=True)
    try:
        child = int(agent.stdout.readline())
        if other == "said":
            (attempt / str(lost) / vipcli.node_ranks.SAID_MARK).touch()
        if other == "done":
            (attempt / str(lost) / vipcli.node_ranks.DONE_MARK).touch()
        if other != "killed starting":  # vip started in it (`killed`: its handlers of SIGTERM were in place)
            (attempt / str(lost) / vipcli.node_ranks.STARTED_MARK).touch()
        if other != "running":
            os.kill(child, signal.SIGKILL)
            while not _zombie(child):
                time.sleep(0.01)
        monkeypatch.setattr(vipcli.node_ranks.os, "getppid", lambda: agent.pid)
        for name, value in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": str(speaker),
                            "LOCAL_RANK": str(speaker), "TORCHELASTIC_RUN_ID": "job7",
                            "TORCHELASTIC_ERROR_FILE": str(attempt / str(speaker) / "error.json")}.items():
            monkeypatch.setenv(name, value)

        def terminated(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)  # torchrun stops the ranks that are left
            raise AssertionError("SIGTERM did not stop the run")

        monkeypatch.setattr(vipcli.train, "check_config", terminated)
        code, _, err = cli("train", "--data", data, "--backbone", "toy", "--out", tmp_path / "run")
    finally:
        agent.kill()
        agent.wait()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 143 and not (tmp_path / "run").exists(), err
    if said is None:
        assert lines == [], err
        return
    assert len(lines) == 1 and lines[0].startswith(f"error: {said}"), err
    if other == "killed":
        assert "printed no line, so torchrun stopped the other ranks" in lines[0]
        assert "run the same command again: what is finished is kept" in lines[0]
    assert (attempt / str(speaker) / vipcli.node_ranks.SAID_MARK).exists()  # for the ranks that outlive this one


class _Store:
    """torchrun's store as the heartbeats use it: counters that `add` counts up and reads."""

    def __init__(self):
        self.counts, self.lock = {}, __import__("threading").Lock()

    def add(self, key: str, amount: int) -> int:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + amount
            return self.counts[key]


@pytest.mark.parametrize("other", ["stopped", "slow"])
def test_a_rank_whose_process_stopped_is_named_long_before_the_barrier_timeout(monkeypatch, other):
    """A rank stopped with SIGSTOP (a suspended job, a frozen node) kept the others waiting at their barrier for
    VIP_BARRIER_HOURS (24 hours), then `waited 24 hours ... which did not come`. Its heartbeat now stands still, and
    the waiting rank names it after heartbeats.STUCK_S; a rank that is only slow beats on and is waited for."""
    import threading

    import torch.distributed as dist

    from vipcli import distributed, heartbeats
    from vipcli.errors import VipError

    for name, value in {"STUCK_S": 0.3, "BEAT_S": 0.05, "POLL_S": 0.05}.items():
        monkeypatch.setattr(heartbeats, name, value)
    store, arrived = _Store(), threading.Event()
    monkeypatch.setattr(heartbeats, "_beats", heartbeats.Heartbeats(0, 2, lambda: store).start())
    slow_share_s = 1.0  # rank 1's share takes longer than STUCK_S: it arrives then

    def rank_one():  # beats while it works (slow), or not after its first beat, which every rank makes (stopped)
        store.add(f"{heartbeats._beats.prefix}1", 1)
        started = time.monotonic()
        while other == "slow" and time.monotonic() - started < slow_share_s:
            store.add(f"{heartbeats._beats.prefix}1", 1)
            time.sleep(0.05)
        if other == "slow":
            arrived.set()

    monkeypatch.setattr(dist, "barrier", lambda: arrived.wait(5))  # gloo's barrier: returns once rank 1 arrives
    threading.Thread(target=rank_one, daemon=True).start()
    started = time.monotonic()
    try:
        if other == "slow":
            distributed.barrier(distributed.World(0, 2), "the end of predicting")
            assert time.monotonic() - started >= slow_share_s
            return
        with pytest.raises(VipError) as stopped:
            distributed.barrier(distributed.World(0, 2), "the end of predicting")
    finally:
        heartbeats.stop()
    assert time.monotonic() - started < 3
    assert stopped.value.message.startswith("rank 0 of 2 stopped waiting at the end of predicting for rank 1, whose "
                                            "process has not run for 0 s (stopped with kill -STOP"), stopped.value
    assert stopped.value.hint.startswith("resume it (kill -CONT) or end it, then run the same command again")


def test_ranks_resumed_together_after_a_suspended_job_are_not_called_stopped(monkeypatch):
    """A job suspended whole (every rank stopped, then continued an hour later) must not read, at the waiting rank's
    first look after it, as another rank that has not run for an hour: the watch begins afresh."""
    from vipcli import heartbeats

    store, clock = _Store(), [1000.0]
    monkeypatch.setattr(heartbeats.time, "monotonic", lambda: clock[0])
    beats = heartbeats.Heartbeats(0, 2, lambda: store)
    store.add(f"{beats.prefix}1", 1)  # rank 1 beat (a rank that never beat is never called stopped)
    assert beats.stuck() == []  # rank 1 first seen now
    clock[0] += 3600  # everyone stopped for an hour
    assert beats.stuck() == []  # rank 0 itself did not run: it looks afresh
    for _ in range(int(heartbeats.STUCK_S // heartbeats.POLL_S) + 2):  # rank 0 watches on; rank 1 never beats again
        clock[0] += heartbeats.POLL_S
        stuck = beats.stuck()
    assert [rank for rank, _ in stuck] == [1]


def test_a_rank_whose_store_call_failed_once_beats_on_and_is_not_called_stopped(monkeypatch):
    """One failed call to torchrun's store (a moment's overload, a dropped connection) ended a rank's beating thread
    for good: five minutes on, the ranks waiting for its slow share said it had `not run for 300 s (stopped with
    kill -STOP ...)`, of a process that was running. Its beat is now tried again, on a new connection."""
    from vipcli import heartbeats

    monkeypatch.setattr(heartbeats, "BEAT_S", 0.01)
    store, connections = _Store(), []

    class Flaky:  # the first connection fails its second call, as a dropped one does; a new one works
        def __init__(self):
            self.calls = 0
            connections.append(self)

        def add(self, key, amount):
            self.calls += 1
            if len(connections) == 1 and self.calls == 2:
                raise RuntimeError("Connection reset by peer")
            return store.add(key, amount)

    beating = heartbeats.Heartbeats(1, 2, Flaky).start()
    try:
        deadline = time.monotonic() + 5
        while store.counts.get(f"{beating.prefix}1", 0) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        beating.stop()
    assert store.counts[f"{beating.prefix}1"] >= 5 and len(connections) >= 2  # beats on after the failed call


def test_a_rank_that_never_beat_is_not_called_stopped(monkeypatch):
    """A rank whose beat could not start (the store out of its reach as it joined) has a count of 0 that never
    moves: it was named as a stopped process after five minutes, though nothing was known of it."""
    from vipcli import heartbeats

    store, clock = _Store(), [1000.0]
    monkeypatch.setattr(heartbeats.time, "monotonic", lambda: clock[0])
    beats = heartbeats.Heartbeats(0, 3, lambda: store)
    store.add(f"{beats.prefix}2", 1)  # rank 2 beat once, then stopped; rank 1 never beat
    for _ in range(int(heartbeats.STUCK_S // heartbeats.POLL_S) + 2):
        stuck = beats.stuck()
        clock[0] += heartbeats.POLL_S
    assert [rank for rank, _ in stuck] == [2]


FROZEN_STORE = """
import os, signal, sys, threading, time
from vipcli import heartbeats
heartbeats.POLL_S, heartbeats.BEAT_S = 0.2, 0.1
heartbeats.start(0, 2, {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": sys.argv[1]})
assert heartbeats._beats is not None
os.kill(int(sys.argv[2]), signal.SIGSTOP)  # the store's node froze
threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()  # Ctrl-C once the first look is under way
started = time.monotonic()
try:
    heartbeats.watched(lambda: time.sleep(60), lambda stuck: AssertionError(stuck))
except KeyboardInterrupt:
    print(f"stopped {time.monotonic() - started:.1f} s after the wait began", flush=True)
os._exit(0)  # the threads that wait on the frozen store are left behind
"""

STORE_SERVER = """
import sys, time
from datetime import timedelta
import torch.distributed as dist
store = dist.TCPStore("127.0.0.1", int(sys.argv[1]), is_master=True, timeout=timedelta(seconds=60))
print("ready", flush=True)
time.sleep(120)
"""


@needs_gloo
def test_ctrl_c_stops_a_waiting_rank_at_once_when_the_stores_node_froze():
    """A waiting rank read the other ranks' beats from its main thread: where the node of torchrun's store froze,
    that read never returned (torch's store client does not time it out), and Ctrl-C was never seen. The look now
    runs in a thread of its own, and Ctrl-C stops the wait at once."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath()}
    port = str(_free_port())
    server = subprocess.Popen([sys.executable, "-c", STORE_SERVER, port], env=environment, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        rank = subprocess.Popen([sys.executable, "-c", FROZEN_STORE, port, str(server.pid)], env=environment,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            said, err = rank.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            rank.kill()
            said, err = rank.communicate()
    finally:
        server.kill()
        server.wait()
    assert said.startswith("stopped "), f"Ctrl-C was not seen within 60 s of the wait: {said} {err}"
    assert float(said.split()[1]) < 5, said
