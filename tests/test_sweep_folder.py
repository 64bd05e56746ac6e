"""vipcli.sweep_folder: what a sweep's results folder stores, and how an earlier vip's files are read."""

from __future__ import annotations

from pathlib import Path


def test_an_earlier_vips_unreadable_name_given_up_from_the_working_directory_is_made_relative(tmp_path,
                                                                                              monkeypatch):
    """An earlier vip named a sweep's unreadable files as its run was given them: `../data/test/x.png` for
    `--data ../data`. Joined to that data folder, such a name still reaches the file (`../data/../data/...`),
    so it was kept as it was, and split.json listed the file twice once the sweep went on (old and new name)."""
    from vipcli.sweep_folder import relative_stored_name

    (tmp_path / "data" / "test" / "nevus").mkdir(parents=True)
    (tmp_path / "data" / "test" / "nevus" / "broken.png").write_bytes(b"not an image")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    root = Path("../data")
    assert relative_stored_name("../data/test/nevus/broken.png", root) == "test/nevus/broken.png"
    assert relative_stored_name("test/nevus/broken.png", root) == "test/nevus/broken.png"  # today's name
    assert relative_stored_name(str(tmp_path / "data/test/nevus/broken.png"), root) == "test/nevus/broken.png"


def test_an_earlier_vips_sweep_resumes_with_its_data_folder_given_another_way(tmp_path, monkeypatch):
    """An earlier vip's split digest named the files as its run was given them (`../data/...`): given
    absolute, or from another working directory, the sweep was refused as 'files were added, removed or
    moved since' though none were. Its split.json lists the same files relative to the data folder:
    the digest is upgraded then, and still not when the files differ."""
    from vipcli.data import load_dataset
    from vipcli.lesion_world import write_dataset
    from vipcli.sweep_folder import relative_to_data, split_digest, upgrade_split_digest

    write_dataset(tmp_path / "data", {"train": 2, "val": 1, "test": 1}, seed=0)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    then = load_dataset(Path("../data"), seed=1)
    stored = {"config": {"split_digest": split_digest(then, as_given=True)}}  # as an earlier vip wrote it
    split = {name: [[relative_to_data(s.path, Path(then.root)), s.label] for s in then.splits[name]]
             for name in ("train", "val", "test")}
    now = load_dataset(tmp_path / "data", seed=1)  # given absolute
    assert upgrade_split_digest(stored, now)["config"]["split_digest"] != split_digest(now)  # cannot tell alone
    assert upgrade_split_digest(stored, now, split)["config"]["split_digest"] == split_digest(now)
    moved = {**split, "test": split["test"][1:]}
    assert upgrade_split_digest(stored, now, moved) == stored


def test_a_split_json_written_beside_another_results_json_does_not_upgrade_its_digest(tmp_path, monkeypatch):
    """`vip benchmark --force` writes split.json (of today's files) before its first row replaces results.json:
    stopped in between, the folder holds an earlier vip's results.json (rows of files since removed) beside a
    split.json listing today's files, and the next resume took that split.json for the earlier sweep's and
    resumed its rows. split.json names the results.json digest it was written beside; only that one is upgraded."""
    from vipcli.data import load_dataset
    from vipcli.lesion_world import write_dataset
    from vipcli.sweep_folder import relative_to_data, split_digest, upgrade_split_digest

    write_dataset(tmp_path / "data", {"train": 2, "val": 1, "test": 2}, seed=0)
    monkeypatch.chdir(tmp_path)
    then = load_dataset(Path("data"), seed=1)
    stored = {"config": {"split_digest": split_digest(then, as_given=True)}}  # an earlier vip's, of these files
    removed = then.splits["test"][0].path
    Path(removed).unlink()
    now = load_dataset(tmp_path / "data", seed=1)
    lists = {name: [[relative_to_data(s.path, Path(now.root)), s.label] for s in now.splits[name]]
             for name in ("train", "val", "test")}
    after_force = {**lists, "results_split_digest": None}  # written by a --force run, stopped before any row
    assert upgrade_split_digest(stored, now, after_force) == stored  # refused: files were removed since
    resumed = {**lists, "results_split_digest": stored["config"]["split_digest"]}  # a resume of that results.json
    assert upgrade_split_digest(stored, now, resumed)["config"]["split_digest"] == split_digest(now)
