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
