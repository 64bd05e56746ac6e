"""`vip demo` on the shipped toy backbone: symptoms carry knowledge that class names do not."""

from __future__ import annotations

import json


def _accuracy(rows, method, shots):
    values = [r["test_accuracy"] for r in rows if r["method"] == method and str(r["shots"]) in (str(shots), "0", "-")]
    return sum(values) / len(values)


def test_demo_shows_the_papers_claim_with_margins(cli, tmp_path):
    out = tmp_path / "demo"
    code, stdout, err = cli("demo", "--out", out, "--test-per-class", "100", "--bench-seeds", "1")
    assert code == 0, err
    for step in ("lesion world", "'melanoma' symptom pack", "vip train", "vip predict --explain", "vip benchmark"):
        assert step in stdout
    assert "Small, dark areas within the spot" in stdout and "merge weight" in stdout
    rows = json.loads((out / "benchmark" / "results.json").read_text())["rows"]
    names, symptoms = _accuracy(rows, "zeroshot", 16), _accuracy(rows, "symptom-zeroshot", 16)
    vip = _accuracy(rows, "vip", 16)
    # measured (lesion seed 0, 200 test images, bench seed 1): zeroshot 48.5, symptom-zeroshot 73.5, vip 79.0
    assert abs(names - 50) <= 15  # class names mean nothing to the toy model
    assert symptoms >= names + 10  # the paper's symptoms do
    assert vip >= symptoms + 2  # and ViP's learned prompts improve on them
    assert (out / "run" / "model.safetensors").is_file() and (out / "benchmark" / "shots.png").is_file()
    # it ends with the reports and says where to open them; the predictions show prediction sets
    assert "set {" in stdout and f"file://{(out / 'run' / 'report.html').resolve()}" in stdout
    # and says what to run next on one's own images (a hint, on stderr)
    assert err.splitlines()[-1] == ("next: train on your own images, one subfolder per class: vip train --data FOLDER "
                                    "(README: Train on your own images)"), err
    for report in (out / "run" / "report.html", out / "benchmark" / "report.html"):
        assert report.is_file() and "<svg role=\"img\"" in report.read_text()  # figures drawn, inline
    _readme_python_runs_on_the_demo(out)


def _readme_python_runs_on_the_demo(out):
    """README's "From Python" example, as written, on this demo's folder: its output has README's lines
    (the figures differ: this demo has fewer test images)."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## From Python"):]
    code, shown = re.findall(r"```python\n(.*?)```\n\nReal output, after `vip demo`:\n\n```\n(.*?)```", section,
                             re.S)[0]
    ran = subprocess.run([sys.executable, "-c", code.replace("vip-demo/", f"{out.name}/")], cwd=out.parent,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    got, want = ran.stdout.splitlines(), shown.replace("vip-demo/", f"{out.name}/").splitlines()
    assert len(got) == len(want) and got[0] == want[0]
    words = re.compile(r"[A-Za-z_/.-]+[A-Za-z]")  # every word and path, not the figures
    assert [words.findall(line) for line in got] == [words.findall(line) for line in want]


def test_demo_never_replaces_a_folder_it_did_not_make(cli, tmp_path):
    out = tmp_path / "mine"
    (out / "run").mkdir(parents=True)
    (out / "run" / "notes.txt").write_text("keep me")
    code, stdout, err = cli("demo", "--out", out)
    assert code == 1 and "holds files that `vip demo` did not make" in err and "--force" in err and stdout == ""
    assert (out / "run" / "notes.txt").read_text() == "keep me" and sorted(p.name for p in out.iterdir()) == ["run"]


def test_a_second_demo_into_the_same_folder_at_once_refuses_before_writing_anything(cli, tmp_path):
    """A second `vip demo` started while the first ran regenerated data/ under the first one's training, replaced
    its run/ and stopped 40 s later at the benchmark's lock. It now refuses at once, the folder left to the first."""
    import os
    import socket

    from vipcli.locks import output_lock

    out = tmp_path / "vip-demo"
    with output_lock(out, lock=tmp_path / ".vip-demo.lock"):  # as a demo running in another process holds it
        code, stdout, err = cli("demo", "--out", out)
    assert code == 1 and stdout == "" and err.splitlines() == [
        f"error: {out} is being written by another vip process (pid {os.getpid()} on host {socket.gethostname()}) "
        "(wait for it to finish, or pass another --out)"]
    assert sorted(os.listdir(tmp_path)) == []  # nothing written, and no lock left behind

def test_demo_force_refuses_a_run_or_benchmark_folder_of_the_users_before_writing_anything(cli, tmp_path):
    """`--force` let the demo in, and it wrote its data set and symptom step before `vip train --force` refused the
    user's run/ (or the sweep their benchmark/): the demo now makes those checks first."""
    for part, name in (("run", "notes.txt"), ("benchmark", "results.csv"), ("data", "other-study")):
        out = tmp_path / part
        (out / part).mkdir(parents=True)
        (out / part / name).write_text("keep me")
        code, stdout, err = cli("demo", "--out", out, "--force")
        assert code == 1 and err.count("error:") == 1 and "Traceback" not in err, err
        assert f"--out {out / part}" in err and "choose another --out" in err
        assert stdout == "" and sorted(p.name for p in out.iterdir()) == [part]
        assert (out / part / name).read_text() == "keep me"


def _earlier_demo_folder(out):
    """A folder as vip 0.1's `vip demo` left it: no marker, a lesion world in data/, run/ and benchmark/."""
    from vipcli.lesion_world import write_dataset

    write_dataset(out / "data", {"train": 2, "val": 1, "test": 1}, seed=0)
    for part, files in {"run": ("run.yaml", "model.safetensors", "metrics.json", "split.json", "report.html"),
                        "benchmark": ("results.csv", "results.json", "shots.png", "split.json", "report.html")}.items():
        (out / part).mkdir()
        for name in files:  # its pages titled as vip titles them
            (out / part / name).write_text(f"<html><head><title>vip {'benchmark ' * (part == 'benchmark')}report: "
                                           "x</title></head></html>" if name == "report.html" else "x")
    return out


def test_demo_replaces_the_folder_of_vip_0_1s_demo(tmp_path):
    """vip 0.1's demo wrote no marker: running the demo again where it ran then is not refused as
    'holds files that `vip demo` did not make'; the same folder with a file of the user's is."""
    import pytest

    from vipcli.cli.demo import check_demo_folder
    from vipcli.errors import VipError

    out = _earlier_demo_folder(tmp_path / "vip-demo")
    check_demo_folder(out, force=False)  # no error: the demo may replace its own earlier files
    for extra in (out / "run" / "notes.txt", out / "notes.txt", out / "data" / "test" / "nevus" / "scan.jpg"):
        extra.write_text("keep me")
        with pytest.raises(VipError, match="did not make"):
            check_demo_folder(out, force=False)
        extra.unlink()


def test_a_demo_stopped_while_it_writes_its_data_leaves_the_earlier_data_whole(cli, tmp_path, monkeypatch):
    """A demo run again and stopped while it wrote its lesion world left vip-demo/data with train/ and val/ but no
    test/ (the earlier splits deleted first), beside the earlier run and benchmark, and said "nothing half-written
    was left behind"."""
    from vipcli import lesion_world

    out = tmp_path / "vip-demo"
    lesion_world.write_dataset(out / "data", {"train": 2, "val": 2, "test": 2}, seed=0)
    (out / ".vip-demo").write_text("made by `vip demo`\n")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    written, save = [], lesion_world._save_png

    def stopped_after_three(image, path):
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(path)
        save(image, path)

    monkeypatch.setattr(lesion_world, "_save_png", stopped_after_three)
    code, _, err = cli("demo", "--out", out)
    assert code == 130 and "interrupted" in err and len(written) == 3, err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nor a staging folder left beside it
