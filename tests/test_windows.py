"""What a user on Windows meets, tested here through the seams that choose Windows' way: its file locks
(`windows_locks`: no flock, `msvcrt.locking`, folders locked through a file beside them), its shells'
quoting (`vipcli.shell.quote`'s `windows` parameter), its consoles' and its files' encodings."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

import windows_locks

HOLD_OUTPUT = "from vipcli.locks import output_lock\nwith output_lock(sys.argv[3], lock=sys.argv[4]):\n" \
              "    print('held', flush=True); sys.stdin.read()"


def _kill(child) -> None:
    """Kill `child` as Task Manager's End task does: no cleanup runs, its files stay behind."""
    child.send_signal(signal.SIGKILL)
    child.wait()


# --- locks -----------------------------------------------------------------------------------------------


def test_on_windows_report_tells_a_sweep_still_running_and_not_a_killed_ones_lock_file(tmp_path, monkeypatch):
    """`vip report` said nothing on Windows of a sweep writing the folder: its test took flock's shared lock,
    which Windows has not, and answered "no sweep" there."""
    from vipcli.locks import BYTE_LOCK_AT
    from vipcli.sweep_folder import SWEEP_LOCK, running_sweep

    windows_locks.install(monkeypatch)
    folder = tmp_path / "bench"
    folder.mkdir()
    sweep = windows_locks.hold_in_child(HOLD_OUTPUT, folder, folder / SWEEP_LOCK)
    try:  # the pid in the lock file is readable: Windows' lock, which bars reading its bytes, is past them
        assert running_sweep(folder) == f" (pid {sweep.pid} on host {socket.gethostname()})"
        assert running_sweep(folder) == f" (pid {sweep.pid} on host {socket.gethostname()})"  # asking took nothing
    finally:
        _kill(sweep)
    assert (folder / SWEEP_LOCK).exists() and running_sweep(folder) is None  # its lock died with it
    assert {position for _, position in windows_locks.calls} == {BYTE_LOCK_AT}
    modes = [mode for mode, _ in windows_locks.calls]
    assert modes == [windows_locks.LK_NBLCK] * 3 + [windows_locks.LK_UNLCK]  # refused twice; then taken, released


def test_on_windows_a_second_writer_is_refused_and_a_lock_is_released_before_its_file_goes(tmp_path, monkeypatch):
    from vipcli.errors import VipError
    from vipcli.locks import lock_file, output_lock

    windows_locks.install(monkeypatch)
    out = tmp_path / "p.jsonl"
    writer = windows_locks.hold_in_child(HOLD_OUTPUT, out, lock_file(out))
    try:
        with pytest.raises(VipError, match=f"is being written by another vip process \\(pid {writer.pid} on host"):
            with output_lock(out):
                pass
    finally:
        _kill(writer)
    windows_locks.calls.clear()
    with output_lock(out):  # the killed writer's lock file blocks nothing
        pass
    assert [mode for mode, _ in windows_locks.calls] == [windows_locks.LK_NBLCK, windows_locks.LK_UNLCK]
    assert not lock_file(out).exists()


HOLD_STAGING = ("from vipcli.atomic import atomic_folder\nwith atomic_folder(sys.argv[3]) as staging:\n"
                "    (staging / 'v').write_text('half'); print('held', flush=True); sys.stdin.read()")


def _age(path) -> None:
    """Make `path` look untouched for longer than a staging folder's writer is waited for."""
    from vipcli.atomic import ABANDONED_AFTER_S

    long_ago = time.time() - ABANDONED_AFTER_S - 5
    os.utime(path, (long_ago, long_ago))


def test_on_windows_a_killed_writers_staging_folder_is_removed_and_a_live_ones_left(tmp_path, monkeypatch):
    """Windows opens no folder, so vip locked none there and left every killed writer's `.NAME.*.partial`
    folder (as big as a run or a sorted data set) behind for good."""
    from vipcli.atomic import atomic_folder

    windows_locks.install(monkeypatch)
    target = tmp_path / "run"
    writer = windows_locks.hold_in_child(HOLD_STAGING, target)
    try:
        staged = [p.name for p in tmp_path.iterdir()]
        (partial,) = [name for name in staged if name.endswith(".partial")]
        assert sorted(staged) == sorted([partial, partial + ".lock"])  # its lock is a file beside it
        _age(tmp_path / partial)
        with atomic_folder(target) as staging:  # a live writer's, however old: left to it
            (staging / "v").write_text("first")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([partial, partial + ".lock", "run"])
    finally:
        _kill(writer)
    with atomic_folder(target) as staging:  # now its writer is dead
        (staging / "v").write_text("second")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and (target / "v").read_text() == "second"


def test_on_windows_a_staging_lock_file_whose_folder_went_is_removed_and_an_unlocked_folder_kept(tmp_path,
                                                                                               monkeypatch):
    from vipcli.atomic import atomic_folder

    windows_locks.install(monkeypatch)
    (tmp_path / ".run.k1ll3d.partial.lock").write_text("")  # killed between removing its folder and its lock
    unknown = tmp_path / ".run.0ld.partial"  # a vip that did not lock its folders on Windows: cannot be told
    unknown.mkdir()
    _age(unknown)
    with atomic_folder(tmp_path / "run") as staging:
        (staging / "v").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.0ld.partial", "run"]


# --- commands printed for the user to copy ---------------------------------------------------------------

ANN = r"C:\Users\Ann Lee\runs"


@pytest.mark.parametrize("windows, word, quoted", [
    (True, ANN, f'"{ANN}"'),  # double quotes, which cmd.exe and PowerShell both take; backslashes as they are
    (True, r"C:\runs\isic", r"C:\runs\isic"),  # a plain word stays plain
    (True, "D:\\my data\\", '"D:\\my data\\\\"'),  # a backslash before the closing quote is doubled
    (True, "R&D;(1),'a'", "\"R&D;(1),'a'\""),  # what either shell reads: & ; ( ) , '
    (True, "@list", '"@list"'),  # PowerShell's splatting
    (True, "", '""'),
    (False, ANN, f"'{ANN}'"),
    (False, "/home/ann/my runs", "'/home/ann/my runs'"),
    (False, "it's", "'it'\"'\"'s'"),
    (False, "runs/isic", "runs/isic"),
])
def test_a_word_is_quoted_for_the_users_shell(windows, word, quoted):
    from vipcli.shell import quote

    assert quote(word, windows=windows) == quoted


@pytest.mark.parametrize("word", [ANN, "D:\\my data\\", 'a "quoted" name', "tab\there", "x \\\\\"y"])
def test_a_quoted_windows_word_is_read_back_as_itself_by_windows_programs(word):
    """Python's `subprocess.list2cmdline` writes what Windows programs' argument parsing (the MS C runtime's,
    vip.exe's) reads back as one word: for a word with a space the two must agree."""
    import subprocess

    from vipcli.shell import quote

    assert quote(word, windows=True) == subprocess.list2cmdline([word])


def test_next_hints_quote_a_path_with_spaces_for_the_shell_of_the_system(cli, tmp_path, monkeypatch):
    """`vip data sort`'s `next: vip train --data OUT` printed the folder bare: a space split it in two."""
    import shlex

    from PIL import Image

    from vipcli import shell

    images = tmp_path / "img"
    images.mkdir()
    for number, name in enumerate(("a.png", "b.png")):
        Image.new("RGB", (8, 8), (number * 90, 40, 90)).save(images / name)
    (tmp_path / "gt.csv").write_text("image,label\na,melanoma\nb,nevus\n")  # classes with shipped packs
    for windows in (False, True):
        monkeypatch.setattr(shell, "WINDOWS", windows)
        out = tmp_path / f"Ann Lee {windows}" / "sorted"
        code, stdout, err = cli("data", "sort", tmp_path / "gt.csv", "--images", images, "--out", out)
        assert code == 0, err
        expected = f'"{out}"' if windows else shlex.quote(str(out))
        assert f"next: vip train --data {expected}\n" in err  # a hint: stderr, not among the results


# --- consoles ---------------------------------------------------------------------------------------------


def test_output_redirected_in_a_windows_code_page_escapes_what_it_cannot_write(tmp_path, monkeypatch):
    """`vip symptoms show PACK > p.txt` on Windows (stdout in cp1252, strict) stopped at a symptom's `≥` with
    "unexpected UnicodeEncodeError ... this is a bug in vip", the pack half-printed."""
    import io
    import sys

    from vipcli.cli.main import main

    pack = tmp_path / "spots.yaml"
    pack.write_text("name: spots\nmodality: dermoscopic images\nsymptoms:\n  - Diameter ≥ 6 mm\n"
                    "  - Couleur brun foncé\n  - 色素ネットワーク\n", encoding="utf-8")
    redirected = io.TextIOWrapper(io.BytesIO(), encoding="cp1252", newline="")
    monkeypatch.setattr(sys, "stdout", redirected)
    assert main(["symptoms", "show", str(pack)]) == 0
    redirected.flush()
    shown = redirected.buffer.getvalue().decode("cp1252")
    assert "1. Diameter \\u2265 6 mm\n" in shown and "2. Couleur brun foncé\n" in shown
    assert "3. \\u8272\\u7d20\\u30cd\\u30c3\\u30c8\\u30ef\\u30fc\\u30af\n" in shown


def test_a_utf8_output_is_left_strict(monkeypatch):
    import io

    from vipcli.console import escape_unencodable_output

    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    escape_unencodable_output(stream)
    assert stream.errors == "strict"


# --- files vip writes -------------------------------------------------------------------------------------


def test_a_run_is_written_in_utf8_whatever_the_systems_code_page(tmp_path):
    """On Windows Python writes text in the code page (cp1252): run.yaml, written so, failed at the end of
    training on a symptom's `≥` (UnicodeEncodeError, "a bug in vip"), and held a `é` as a byte that `vip symptoms
    show RUN` then refused as "not UTF-8 text". Here a POSIX locale stands in for the code page (ASCII)."""
    import subprocess
    import sys

    code = ("import sys, torch; from vipcli.checkpoint import write_run\n"  # (ASCII: the command line is read so)
            "write_run(sys.argv[1], {'w': torch.ones(1)}, {'method': 'vip', 'class_names': ['naevus fonc\\u00e9'], "
            "'symptoms': {'naevus fonc\\u00e9': ['Diameter \\u2265 6 mm']}}, {'train': []}, {})")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONUTF8": "0", "LC_ALL": "POSIX",
                               "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "run" / "run.yaml").read_bytes().decode("utf-8")
    assert "naevus foncé" in text and "Diameter ≥ 6 mm" in text and "\r" not in text


@pytest.mark.parametrize("windows", [True, False])
def test_a_page_held_open_by_another_program_is_one_line_naming_that(tmp_path, monkeypatch, windows):
    """Windows lets no open file be replaced: a report.html or predictions CSV open in another program failed
    as `cannot write ... (permission denied) (make it writable ...)`, though the folder was writable. On POSIX,
    where an open file can be replaced, the same refusal is the file's permissions, said as before."""
    from vipcli import preflight
    from vipcli.errors import VipError
    from vipcli.report.html import write_html

    monkeypatch.setattr(preflight, "WINDOWS", windows)

    page = tmp_path / "report.html"
    earlier = "<html><head><title>vip report: an earlier run</title></head></html>"  # a page vip wrote
    page.write_text(earlier)
    _refuse_replacing(monkeypatch, lambda source, destination: Path(destination) == page)
    with pytest.raises(VipError) as raised:
        write_html(page, "<html></html>")
    assert (raised.value.message, raised.value.hint) == ((
        f"cannot write {page}: another program has it open (Windows lets no open file be replaced), or it is "
        "read-only; nothing was written", "close it there, then run the same command again") if windows else (
        f"cannot write {page} (permission denied); nothing was written", "make it writable, then run the same "
        "command again"))
    assert page.read_text() == earlier and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_a_sweep_that_cannot_write_a_table_names_that_table(tmp_path, monkeypatch):
    """`cannot write OUT/results.json (no space ...)` named results.json, joined with a `/` after a Windows
    path, when results.csv or summary.csv was the file that could not be written."""
    import errno

    from vipcli import sweep_folder
    from vipcli.errors import VipError

    real = sweep_folder.write_atomic

    def full_at_summary(path, data):
        if Path(path).name == "summary.csv":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(sweep_folder, "write_atomic", full_at_summary)
    with pytest.raises(VipError, match=f"^cannot write {re.escape(str(tmp_path / 'summary.csv'))} \\(no space"):
        sweep_folder.save_results(tmp_path, {"data": "d"}, ["a", "b"], [])


def test_a_run_replaced_while_a_file_of_it_is_open_elsewhere_says_so(tmp_path, monkeypatch):
    """`vip train --force` on Windows while another program holds a file of the old run open: the run folder
    cannot be moved aside, which failed as `(permission denied) (free some space or choose another --out ...)`."""
    import torch

    from vipcli import preflight
    from vipcli.checkpoint import write_run
    from vipcli.errors import VipError

    monkeypatch.setattr(preflight, "WINDOWS", True)
    run = write_run(tmp_path / "run", {"w": torch.ones(1)}, {"method": "vip"}, {"train": []}, {})
    _refuse_replacing(monkeypatch, lambda source, destination: Path(source) == run)
    with pytest.raises(VipError) as raised:
        write_run(run, {"w": torch.zeros(1)}, {"method": "vip"}, {"train": []}, {}, force=True)
    assert raised.value.message == (f"cannot write {run}: another program has a file in it open (Windows lets no "
                                    "open file be replaced), or a file in it is read-only; nothing was written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_messages_join_a_users_path_with_the_systems_separator():
    """`{out}/results.json` in a message read `C:\\bench/results.json` on Windows: a user's path and a name
    after it are joined as paths (`out / "results.json"`), which take the system's separator."""
    import vipcli

    # ({a}/{b} is a name inside a run or an output folder, which is written so on every system)
    joined = re.compile(r"\{(?:out|folder|root|run|run_dir|path|data|dataset\.root|result\.out)\}/(?!\{)")
    found = [f"{file.name}:{number}" for file in Path(vipcli.__file__).parent.rglob("*.py")
             for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1) if joined.search(line)]
    assert found == []


def test_a_cache_entry_another_process_holds_open_is_skipped_and_the_cache_kept(tmp_path, monkeypatch, capsys):
    """Windows lets no open file be replaced: an entry being read by another vip sharing the cache stopped this
    one's cache for the rest of the run, with `cannot write the feature cache ... (permission denied); going on
    without it (set VIP_CACHE_DIR to a writable folder ...)`."""
    import errno

    import torch

    from vipcli import atomic
    from vipcli.features import FeatureCache
    from vipcli.registry import load_backbone

    cache = FeatureCache(tmp_path / "cache", load_backbone("toy"))
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    dim = 4
    features = {"eval": torch.ones(dim)}
    cache.put(first, "c1", features)
    real = atomic.os.replace

    def held(source, destination):
        if Path(destination) == cache.entry_file(first):
            raise PermissionError(errno.EACCES, "Access is denied", str(source), None, str(destination))
        real(source, destination)

    monkeypatch.setattr(atomic.os, "replace", held)
    cache.put(first, "c2", {"eval": torch.zeros(dim)})  # held open elsewhere: this entry is skipped
    cache.put(second, "c3", features)
    assert cache.writable and "warning" not in capsys.readouterr().err
    assert cache.entry_file(second).is_file() and not list(cache.entry_file(first).parent.glob("*.tmp"))


@pytest.mark.parametrize("windows, said", [
    (False, "export OPENAI_API_KEY=... or point --base-url at a local server"),
    (True, '$env:OPENAI_API_KEY = "..." (PowerShell) or set OPENAI_API_KEY=... (cmd.exe) or point --base-url at a '
           "local server"),
])
def test_how_to_set_the_api_key_is_said_in_the_users_shell(monkeypatch, windows, said):
    """`export OPENAI_API_KEY=...` is no command in PowerShell or cmd.exe."""
    from vipcli import shell
    from vipcli.errors import VipError
    from vipcli.symptoms.llm import LLMConfig, read_api_key

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setattr(shell, "WINDOWS", windows)
    with pytest.raises(VipError) as raised:
        read_api_key(LLMConfig())
    assert raised.value.hint == said


def _refuse_replacing(monkeypatch, refuses) -> None:
    """`os.replace` in vipcli.atomic fails as Windows' does on a file another program holds open
    (PermissionError, "Access is denied") where `refuses(source, destination)`; elsewhere it replaces."""
    import errno

    from vipcli import atomic

    real = atomic.os.replace

    def replace(source, destination):
        if refuses(source, destination):
            raise PermissionError(errno.EACCES, "Access is denied", str(source), None, str(destination))
        real(source, destination)

    monkeypatch.setattr(atomic.os, "replace", replace)


# --- hints that name a command ----------------------------------------------------------------------------


@pytest.mark.parametrize("windows, said", [(False, "chmod -R u+rX"), (True, "its Properties, Security tab")])
def test_an_unreadable_class_folder_says_how_to_give_read_access_on_the_users_system(cli, tmp_path, monkeypatch,
                                                                                     windows, said):
    """`chmod -R u+rX` is no command on Windows, where read access is given in the folder's Properties."""
    from lesion_runs import make_lesions
    from vipcli import shell

    data = make_lesions(tmp_path / "lesions", {"train": 2, "val": 2, "test": 2})
    for image in (data / "train" / "nevus").iterdir():  # what listing an unreadable folder finds
        image.unlink()
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path).name != "nevus" and access(path, mode, **kw))
    monkeypatch.setattr(shell, "WINDOWS", windows)
    code, out, err = cli("train", "--data", data, "--backbone", "toy", "--out", tmp_path / "run")
    assert (code, out) == (1, "") and err.splitlines() == [
        f"error: class folder {data / 'train' / 'nevus'} cannot be read (permission denied) (give your user read "
        f"access to it ({said}), or remove the folder)"]


@pytest.mark.parametrize("windows, said", [(False, "ls -l"), (True, "its Properties, Security tab")])
def test_an_unreadable_symptoms_file_says_where_to_see_who_may_read_it_on_the_users_system(cli, tmp_path,
                                                                                           monkeypatch, windows, said):
    from vipcli import shell

    locked = tmp_path / "locked.yaml"
    locked.write_text("name: melanoma\nsymptoms: [Dark dots]\n")
    read_text = Path.read_text

    def refused(path, *args, **kwargs):
        if path.name == locked.name:
            raise PermissionError(13, "Permission denied")
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refused)
    monkeypatch.setattr(shell, "WINDOWS", windows)
    code, out, err = cli("symptoms", "show", locked)
    assert (code, out) == (1, "") and err.splitlines() == [
        f"error: {locked}: cannot read symptoms file: Permission denied (check that the file can be read by you "
        f"({said}))"]


def test_the_command_that_gives_weights_back_their_recorded_time_is_powershells_on_windows(monkeypatch):
    """A run of an earlier vip names its weights by path, size and modification time; the hint to give a touched
    file back its time said GNU `touch -d`, which Windows has not, and left a path with a space unquoted."""
    from vipcli import shell
    from vipcli.predict import backbone_warning

    mtime_ns = 1_700_000_000_123_456_700  # NTFS keeps 100 ns
    recorded = {"arch": "ViT-B-16", "weights": {"path": r"C:\Users\Ann Lee\w.pt", "size": 10, "mtime_ns": mtime_ns}}
    now = {"arch": "ViT-B-16", "weights": {"file": "w.pt", "size": 10, "sha256": "0" * 64}}
    monkeypatch.setattr(shell, "WINDOWS", False)
    assert r"`touch -d @1700000000.123456700 'C:\Users\Ann Lee\w.pt'` gives it back its recorded time" in \
        backbone_warning("clip", "runs/old", now, recorded)
    monkeypatch.setattr(shell, "WINDOWS", True)
    said = backbone_warning("clip", "runs/old", now, recorded)
    command = re.search(r"`(.*)` gives it back its recorded time", said).group(1)
    ticks = int(re.fullmatch(r'\(Get-Item -LiteralPath "C:\\Users\\Ann Lee\\w\.pt"\)\.LastWriteTimeUtc = '
                             r"\[DateTime\]::FromFileTimeUtc\((\d+)\) in PowerShell", command).group(1))
    assert (ticks - shell.FILETIME_AT_EPOCH) * 100 == mtime_ns  # 100 ns since 1601, as FromFileTimeUtc reads them
