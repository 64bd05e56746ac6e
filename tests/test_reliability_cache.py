"""The feature cache never changes a result: pure entries, checked identity, bounded size, bad disks (#14)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import (disk_fails_under, read_only_folder, error_lines, sha256_without_dtypes, tiny_train_args,
                      writable_again)


def _metrics(out: Path) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    return {key: metrics[key] for key in ("val", "test", "best_epoch", "history")}


def _weights(out: Path) -> dict:
    with safe_open(str(out / "model.safetensors"), "pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}


def _train(cli, monkeypatch, cache: Path, data, config, out: Path, *extra) -> dict:
    monkeypatch.setenv("VIP_CACHE_DIR", str(cache))
    code, _, err = cli(*tiny_train_args(data, config, out, *extra))
    assert code == 0, err
    return _metrics(out)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_run_gives_the_same_result_whatever_filled_the_cache(cli, monkeypatch, isic_small, tiny_clip, tmp_path,
                                                               workers):
    """`--seed 2` on a fresh cache == `--seed 2` after a `--seed 1` run filled the cache (other views drawn)."""
    fresh = _train(cli, monkeypatch, tmp_path / "fresh", isic_small, tiny_clip, tmp_path / "a", "--seed", "2",
                   "--workers", workers)
    _train(cli, monkeypatch, tmp_path / "used", isic_small, tiny_clip, tmp_path / "b", "--seed", "1",
           "--views", "3", "--workers", workers)
    after = _train(cli, monkeypatch, tmp_path / "used", isic_small, tiny_clip, tmp_path / "c", "--seed", "2",
                   "--workers", workers)
    assert after == fresh
    for name, tensor in _weights(tmp_path / "a").items():
        torch.testing.assert_close(_weights(tmp_path / "c")[name], tensor, rtol=0, atol=1e-6)


def test_a_fit_draws_the_same_random_numbers_on_a_cold_and_a_warm_cache(cli, monkeypatch, isic_small, tiny_clip,
                                                                         tmp_path):
    """A method's fit may draw from torch's global generator, which `vip train` seeds before it encodes the
    images: the encoding must not draw from it, or a cold cache (images encoded, a DataLoader per split)
    and a warm one (none) would hand the fit other random numbers, and its result would depend on the
    cache's history."""
    import vipcli.methods.contract as contract

    real_fit, states = contract.checked_fit, []

    def recording_fit(*args, **kwargs):
        states.append(torch.random.get_rng_state())
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(contract, "checked_fit", recording_fit)
    for run in ("cold", "warm"):
        _train(cli, monkeypatch, tmp_path / "cache", isic_small, tiny_clip, tmp_path / run)
    assert len(states) == 2 and torch.equal(states[0], states[1])


def test_a_run_killed_while_writing_the_cache_does_not_change_the_next_one(cli, monkeypatch, isic_small, tiny_clip,
                                                                           tmp_path):
    from vipcli.features import FeatureCache

    fresh = _train(cli, monkeypatch, tmp_path / "fresh", isic_small, tiny_clip, tmp_path / "a", "--seed", "2")
    real_put, written = FeatureCache.put, []

    def dying_put(self, *args):
        if len(written) == 5:
            raise KeyboardInterrupt  # Ctrl-C after five entries
        written.append(args[0])
        real_put(self, *args)

    monkeypatch.setattr(FeatureCache, "put", dying_put)
    monkeypatch.setenv("VIP_CACHE_DIR", str(tmp_path / "killed"))
    code, _, _ = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "b", "--seed", "1"))
    assert code == 130 and len(written) == 5
    monkeypatch.setattr(FeatureCache, "put", real_put)
    assert _train(cli, monkeypatch, tmp_path / "killed", isic_small, tiny_clip, tmp_path / "c", "--seed", "2") == fresh


@pytest.mark.parametrize("stop", [KeyboardInterrupt, OSError])
def test_the_images_encoded_before_a_stop_are_cached_and_not_encoded_again(backbone, isic_small, tmp_path, stop):
    """A Ctrl-C or a job's time limit (SIGTERM stops as Ctrl-C does), or a failure, during the encoding of a
    split loses only the batch in progress: a job whose limit is shorter than its encoding still advances."""
    from vipcli.features import FeatureCache, encode_images

    paths = sorted((isic_small / "train").rglob("*.jpg"))
    decoded = []

    def advance(n=1):
        decoded.append(n)
        if len(decoded) == 5:  # as the fifth image is decoded; each of the four before filled a batch
            raise stop()

    with pytest.raises(stop):
        encode_images(backbone, paths, views=2, cache=FeatureCache(tmp_path / "cache", backbone), batch_size=3,
                      workers=0, advance=advance)
    again = encode_images(backbone, paths, views=2, cache=FeatureCache(tmp_path / "cache", backbone), batch_size=3,
                          workers=0)
    assert again.encoded == 3 * (len(paths) - 4)  # a center view and 2 augmented views of each image not stored
    fresh = encode_images(backbone, paths, views=2, cache=None, batch_size=3, workers=0)
    for i in range(len(paths)):
        torch.testing.assert_close(again.train[i], fresh.train[i], rtol=0, atol=1e-6)


@pytest.mark.parametrize("warm", [False, True])
def test_a_splits_features_are_held_once_in_one_tensor_with_unreadable_images_left_out(backbone, isic_small, tmp_path,
                                                                                      warm):
    """`vip train --shots all` on tens of thousands of images: each image's features (read from the cache or
    just encoded) go into one block per split, and the split's FeatureSet is that block with the unreadable
    images' rows closed up, not a second, stacked copy of every image's features (which doubled the peak)."""
    from vipcli.data import Sample
    from vipcli.features import FeatureCache, encode_images
    from vipcli.featuresets import feature_set

    paths = sorted((isic_small / "train").rglob("*.jpg"))[:5]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a JPEG")
    paths.insert(2, broken)
    samples = [Sample(path, i % 2) for i, path in enumerate(paths)]
    cache = FeatureCache(tmp_path / "cache", backbone)
    if warm:
        encode_images(backbone, paths, views=2, cache=cache, workers=0)
    encoded = encode_images(backbone, paths, views=2, cache=cache, workers=0)
    assert (encoded.encoded == 0) == warm
    blocks = {name: block.untyped_storage().data_ptr() for name, block in encoded.blocks.items()}
    split = feature_set(encoded, samples, with_views=True)
    assert split.x.untyped_storage().data_ptr() == blocks["eval"]  # the block itself: no copy
    assert split.views.untyped_storage().data_ptr() == blocks["train"]
    fresh = encode_images(backbone, [p for p in paths if p != broken], views=2, cache=None, workers=0)
    assert split.paths == [str(p) for p in paths if p != broken] and split.y.tolist() == [0, 1, 1, 0, 1]
    torch.testing.assert_close(split.x, torch.stack([fresh.eval[i] for i in range(5)]), rtol=0, atol=1e-6)
    torch.testing.assert_close(split.views, torch.stack([fresh.train[i] for i in range(5)]), rtol=0, atol=1e-6)


def test_a_benchmark_pool_of_every_training_image_is_the_features_block_and_its_subsets_index_into_it(
        backbone, isic_small, tmp_path, monkeypatch):
    """`vip benchmark --shots 2,all`: the pool of every training image is the block the features were read or
    encoded into (`EncodedImages.take`), unreadable images' rows closed up, not a second, stacked copy of it;
    the 'all' row trains on it as it is, and each few-shot row's subset is rows of it."""
    from vipcli.benchmark import encode_pool, readable_order, select_subset
    from vipcli.data import load_dataset
    from vipcli.features import EncodedImages, FeatureCache, encode_images

    (isic_small / "train" / "melanoma" / "broken.jpg").write_bytes(b"not a JPEG")
    blocks = {}  # "eval" / "train" -> the storage addresses of the blocks made
    keep = EncodedImages._keep

    def recording_keep(self, name, index, features, count):
        keep(self, name, index, features, count)
        blocks.setdefault(name, set()).add(self.blocks[name].untyped_storage().data_ptr())

    monkeypatch.setattr(EncodedImages, "_keep", recording_keep)
    dataset = load_dataset(isic_small)
    pool = encode_pool(backbone, dataset, (2, None), (1,), 2, True, FeatureCache(tmp_path / "cache", backbone), 0, 8)
    assert pool.train.x.untyped_storage().data_ptr() in blocks["eval"]  # the block itself: no copy
    assert pool.train.views.untyped_storage().data_ptr() in blocks["train"]
    readable = [s for s in dataset.splits["train"] if s.path.name != "broken.jpg"]
    assert pool.train.paths == [str(s.path) for s in readable] and len(readable) == len(dataset.splits["train"]) - 1
    assert pool.train.y.tolist() == [s.label for s in readable] and "broken.jpg" in "".join(pool.failures)
    fresh = encode_images(backbone, [s.path for s in readable], views=2, cache=None, workers=0)
    torch.testing.assert_close(pool.train.x, torch.stack([fresh.eval[i] for i in range(len(readable))]),
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(pool.train.views, torch.stack([fresh.train[i] for i in range(len(readable))]),
                               rtol=0, atol=1e-6)
    every, used = select_subset(pool, readable_order(pool, dataset, 1), None)  # the 'all' row: the pool, not a copy
    assert every.x is pool.train.x and every.views is pool.train.views and every.paths == pool.train.paths
    assert used == [6, 6]
    subset, used = select_subset(pool, readable_order(pool, dataset, 1), 2)
    rows = [pool.train.paths.index(path) for path in subset.paths]
    assert used == [2, 2] and torch.equal(subset.views, pool.train.views[rows])
    assert torch.equal(subset.x, pool.train.x[rows])


# --- entries carry and check their identity ------------------------------------------------------


@pytest.fixture
def backbone(tiny_clip):
    from vipcli.registry import load_backbone

    return load_backbone("clip", str(tiny_clip), "none")


def _images(isic_small) -> list[Path]:
    return sorted((isic_small / "train" / "melanoma").iterdir())[:3]


def _encode(backbone, paths, cache):
    from vipcli.features import encode_images

    return encode_images(backbone, paths, views=2, cache=cache, workers=0)


def _entry(cache, path):
    with safe_open(str(cache.entry_file(path)), "pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()


def _swap(cache, paths):
    a, b = cache.entry_file(paths[0]), cache.entry_file(paths[1])
    data = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data)


def _retype(cache, paths):
    tensors, header = _entry(cache, paths[0])
    save_file({k: v.half() for k, v in tensors.items()}, cache.entry_file(paths[0]), metadata=header)


def _reshape(cache, paths):
    tensors, header = _entry(cache, paths[0])
    save_file({"eval": tensors["eval"][:5], "train": tensors["train"]}, cache.entry_file(paths[0]), metadata=header)


def _poison(cache, paths):
    tensors, header = _entry(cache, paths[0])
    tensors["train"][1, 3] = float("nan")
    save_file(tensors, cache.entry_file(paths[0]), metadata=header)


def _garble(cache, paths):
    cache.entry_file(paths[0]).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")


def _flip(cache, paths):
    """One bit of one feature flipped on disk: still finite, of the right shape, under a good header."""
    file = cache.entry_file(paths[0])
    data = bytearray(file.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # the tensors' bytes follow the header
    data[start + 4 * 7 + 2] ^= 0x40  # the top mantissa bit of a float32: it moves by a quarter or more
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, reason", [
    (_swap, "holds the features of"), (_retype, "not float32"), (_reshape, "has shape"),
    (_poison, "NaN"), (_garble, "unreadable file"), (_flip, "do not match their checksum"),
])
def test_a_damaged_entry_is_recomputed_with_one_warning(backbone, isic_small, tmp_path, capsys, damage, reason):
    from vipcli.features import FeatureCache

    paths = _images(isic_small)
    expected = _encode(backbone, paths, FeatureCache(None, backbone))
    cache = FeatureCache(tmp_path / "cache", backbone)
    _encode(backbone, paths, cache)
    damage(cache, paths)
    capsys.readouterr()
    again = _encode(backbone, paths, FeatureCache(tmp_path / "cache", backbone))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "is damaged" in warnings[0] and reason in warnings[0], warnings
    assert again.encoded >= 3  # the damaged entries were computed again
    for i in range(len(paths)):
        torch.testing.assert_close(again.eval[i], expected.eval[i], rtol=0, atol=1e-6)
        torch.testing.assert_close(again.train[i], expected.train[i], rtol=0, atol=1e-6)
    repaired = _encode(backbone, paths, FeatureCache(tmp_path / "cache", backbone))
    assert repaired.encoded == 0 and "warning" not in capsys.readouterr().err


def test_a_flipped_bit_in_an_entry_never_reaches_a_result(backbone, isic_small, tmp_path):
    """The features read back are those encoded afresh, not the flipped ones."""
    from vipcli.features import FeatureCache

    paths = _images(isic_small)
    cache = FeatureCache(tmp_path / "cache", backbone)
    first = _encode(backbone, paths, cache)
    _flip(cache, paths)
    flipped, _ = _entry(cache, paths[0])
    moved = torch.cat([(flipped["eval"] - first.eval[0]).abs(), (flipped["train"] - first.train[0]).abs().flatten()])
    assert all(torch.isfinite(tensor).all() for tensor in flipped.values()) and moved.max() > 1e-3
    again = _encode(backbone, paths, FeatureCache(tmp_path / "cache", backbone))
    assert again.encoded == 3  # the center view and 2 augmented views of the flipped entry's image
    torch.testing.assert_close(again.eval[0], first.eval[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(again.train[0], first.train[0], rtol=0, atol=1e-6)


def test_an_entry_written_without_a_checksum_is_encoded_again_without_a_warning(backbone, isic_small, tmp_path,
                                                                                  capsys):
    from vipcli.features import FeatureCache

    paths = _images(isic_small)
    cache = FeatureCache(tmp_path / "cache", backbone)
    _encode(backbone, paths, cache)
    tensors, header = _entry(cache, paths[0])
    del header["features_sha256"]  # as the vip before checksums wrote it
    save_file(tensors, cache.entry_file(paths[0]), metadata=header)
    capsys.readouterr()
    again = _encode(backbone, paths, FeatureCache(tmp_path / "cache", backbone))
    assert again.encoded == 3 and "warning" not in capsys.readouterr().err
    assert "features_sha256" in _entry(cache, paths[0])[1]  # rewritten with one
    assert _encode(backbone, paths, FeatureCache(tmp_path / "cache", backbone)).encoded == 0


def test_an_entry_whose_checksum_names_no_dtypes_is_read_without_a_warning(backbone, isic_small, tmp_path, capsys):
    """Entries written by vip builds of 2026-11-29 from 22:32 to 23:42 carry features_sha256 without the
    dtype: today's vip called each cache of them damaged (one warning) and encoded them all again."""
    from vipcli.features import FeatureCache

    paths = _images(isic_small)
    cache = FeatureCache(tmp_path / "cache", backbone)
    first = _encode(backbone, paths, cache)
    for path in paths:
        tensors, header = _entry(cache, path)
        save_file(tensors, cache.entry_file(path), metadata={**header, "features_sha256": sha256_without_dtypes(tensors)})
    capsys.readouterr()
    again = _encode(backbone, paths, FeatureCache(tmp_path / "cache", backbone))
    assert again.encoded == 0 and "warning" not in capsys.readouterr().err
    for i in range(len(paths)):
        torch.testing.assert_close(again.eval[i], first.eval[i], rtol=0, atol=0)
    _flip(cache, paths)  # a flipped bit is still told
    assert _encode(backbone, paths, FeatureCache(tmp_path / "cache", backbone)).encoded == 3
    assert "do not match their checksum" in capsys.readouterr().err


def test_entries_of_another_backbone_class_or_id_are_kept_apart(backbone, tiny_clip):
    from vipcli.features import FeatureCache
    from vipcli.registry import load_backbone

    other = load_backbone("clip", str(tiny_clip), "none")
    other.id = "clip-copy"  # the same weights registered under another id
    assert FeatureCache(None, other).key != FeatureCache(None, backbone).key
    subclass = type("OtherClip", (type(backbone),), {})
    twin = subclass.__new__(subclass)
    twin.__dict__.update(backbone.__dict__)
    assert FeatureCache(None, twin).key != FeatureCache(None, backbone).key


def test_features_encoded_in_bf16_on_cuda_are_kept_apart_from_float32_ones(backbone, monkeypatch):
    """A cache shared by a GPU and a CPU machine (a cluster home folder) must not mix their features."""
    from vipcli.features import FeatureCache

    cpu_key = FeatureCache(None, backbone).key
    monkeypatch.setattr(backbone, "device", torch.device("cuda"), raising=False)  # only its identity is taken
    cuda = FeatureCache(None, backbone)
    assert cuda.key != cpu_key and cuda.identity["autocast"] == "bfloat16"
    monkeypatch.setattr(backbone, "device", torch.device("mps"), raising=False)
    assert FeatureCache(None, backbone).key == cpu_key  # float32 there too: same entries


def test_an_edited_plugin_does_not_read_the_features_its_old_code_cached(backbone, tmp_path, monkeypatch):
    """A plugin author edits an editable install (same version, same describe()): the features the old
    code encoded must not be served to the new code."""
    import importlib
    import sys

    from vipcli.features import FeatureCache

    module = tmp_path / "edited_backbone_plugin.py"
    module.write_text("from vip_backbones.clip import ClipBackbone\n\nclass Edited(ClipBackbone):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    keys = []
    for edit in ("", "\n# the image tower changed here\n"):
        module.write_text(module.read_text() + edit)
        sys.modules.pop("edited_backbone_plugin", None)
        cls = importlib.import_module("edited_backbone_plugin").Edited
        twin = cls.__new__(cls)
        twin.__dict__.update(backbone.__dict__)
        keys.append(FeatureCache(None, twin).key)
    assert keys[0] != keys[1]
    sys.modules.pop("edited_backbone_plugin", None)


def test_an_upgrade_of_torch_or_pillow_keeps_its_features_apart(backbone, monkeypatch):
    """Decoding, resizing and encoding run in Pillow and torch: after an upgrade a warm cache must not
    serve what the old versions computed while a fresh one computes something else."""
    import PIL

    from vipcli.features import FeatureCache

    before = FeatureCache(None, backbone)
    assert before.identity["torch"] == torch.__version__ and before.identity["pillow"] == PIL.__version__
    monkeypatch.setattr(PIL, "__version__", PIL.__version__ + ".post1")
    assert FeatureCache(None, backbone).key != before.key
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", torch.__version__ + ".post1")
    assert FeatureCache(None, backbone).key != before.key


def test_a_changed_image_replaces_its_entry_instead_of_adding_one(backbone, isic_small, tmp_path):
    from vipcli.features import FeatureCache

    paths = _images(isic_small)
    cache = FeatureCache(tmp_path / "cache", backbone)
    first = _encode(backbone, paths, cache)
    entries = sorted(cache.folder.rglob("*.safetensors"))
    assert len(entries) == 3
    paths[0].write_bytes(paths[1].read_bytes())  # image 0 now shows image 1
    again = _encode(backbone, paths, FeatureCache(tmp_path / "cache", backbone))
    assert again.encoded == 1 + 2 and sorted(cache.folder.rglob("*.safetensors")) == entries
    torch.testing.assert_close(again.train[0], first.train[1], rtol=0, atol=1e-6)



def test_a_cache_clear_in_another_process_while_entries_are_written_loses_no_entry(backbone, isic_small, tmp_path,
                                                                                  capsys, monkeypatch):
    """`vip cache clear` removing the folders between a training's mkdir and its write: the entry is
    written again, with no warning that the cache is unwritable, and the cache stays in use."""
    import pathlib
    import shutil

    from vipcli.features import FeatureCache

    paths = _images(isic_small)
    cache = FeatureCache(tmp_path / "cache", backbone)
    real_mkdir, cleared = pathlib.Path.mkdir, []

    def mkdir_then_cleared(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)
        if self.parent == cache.folder and not cleared:  # a shard folder, made just before the entry is written
            cleared.append(self)
            shutil.rmtree(tmp_path / "cache" / "features")  # what the other process's clear does meanwhile

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir_then_cleared)
    _encode(backbone, paths, cache)
    assert cleared and "warning" not in capsys.readouterr().err
    assert cache.writable and len(list(cache.folder.rglob("*.safetensors"))) == len(paths)
    assert _encode(backbone, paths, FeatureCache(tmp_path / "cache", backbone)).encoded == 0

def test_temp_files_of_a_killed_write_are_removed_by_the_next_write_into_their_folder(backbone, isic_small,
                                                                                    tmp_path):
    """`kill -9` while an entry is written leaves `.NAME.safetensors.XXXX.tmp` beside it. The next run
    that writes into that shard folder removes such files once they are older than a write takes;
    a younger one (a write under way elsewhere) and files vip did not write are left alone."""
    import os
    import time

    from vipcli.features import STALE_TEMP_SECONDS, FeatureCache

    paths = _images(isic_small)
    cache = FeatureCache(tmp_path / "cache", backbone)
    entry = cache.entry_file(paths[0])
    entry.parent.mkdir(parents=True)
    stale, young = entry.parent / f".{entry.name}.k1ll3d0x.tmp", entry.parent / f".{entry.name}.und3rw4y.tmp"
    mine = entry.parent / "notes.tmp"
    for file in (stale, young, mine):
        file.write_bytes(b"half an entry")
    old = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(stale, (old, old))
    os.utime(mine, (old, old))
    _encode(backbone, paths, cache)
    assert entry.exists() and not stale.exists()
    assert young.exists() and mine.exists()


# --- vip cache info / clear --------------------------------------------------------------------


def test_cache_info_and_clear(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("VIP_CACHE_DIR", str(cache))
    (cache / "llm").mkdir(parents=True)
    answer = cache / "llm" / f"{'ab' * 32}.json"
    answer.write_text('{"answer": "x"}')
    (cache / "mine.txt").write_text("not vip's")
    assert cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))[0] == 0
    code, out, _ = cli("cache", "info", "--json")
    info = json.loads(out)
    assert code == 0 and info["root"] == str(cache) and info["llm_answers"] == 1
    [record] = info["backbones"]
    assert record["backbone"] == "clip" and record["entries"] == 8 + 8 + 8 and record["bytes"] > 0
    code, out, _ = cli("cache", "info")
    assert code == 0 and str(cache) in out and "clip" in out and "24" in out
    code, out, _ = cli("cache", "clear", "--backbone", "toy")
    assert code == 0 and "nothing to remove" in out and "cached: clip" in out
    code, out, _ = cli("cache", "clear", "--backbone", "clip")
    assert code == 0 and "removed 24 feature entries of backbone 'clip'" in out
    assert json.loads(cli("cache", "info", "--json")[1])["backbones"] == []
    assert answer.exists()
    code, out, _ = cli("cache", "clear")
    assert code == 0 and not (cache / "llm").exists() and (cache / "mine.txt").exists()  # only vip's folders go


def test_cache_info_marks_folders_never_read_again_and_clear_stale_removes_only_them(cli, isic_small, tiny_clip,
                                                                                     tmp_path, monkeypatch):
    """After an upgrade (of vip, torch, Pillow or a backbone's code) the old feature folders were listed like
    current ones, and only `vip cache clear` of everything removed them."""
    import shutil

    cache = tmp_path / "cache"
    monkeypatch.setenv("VIP_CACHE_DIR", str(cache))
    assert cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))[0] == 0
    [current] = (cache / "features").glob("clip-*")
    older_torch = current.parent / "clip-00000000000000aa"
    shutil.copytree(current, older_torch)
    identity = json.loads((older_torch / "backbone.json").read_text())
    (older_torch / "backbone.json").write_text(json.dumps({**identity, "torch": "1.13.0", "code": "0" * 16}))
    of_0_1_0 = current.parent / "clip-00000000000000bb"  # vip 0.1.0 wrote no backbone.json
    shutil.copytree(current, of_0_1_0, ignore=shutil.ignore_patterns("backbone.json"))
    records = {Path(r["folder"]).name: r for r in json.loads(cli("cache", "info", "--json")[1])["backbones"]}
    assert records[current.name]["stale"] == []
    assert records[older_torch.name]["stale"] == [f"torch 1.13.0, now {torch.__version__}",
                                                  "backbone 'clip' code changed"]
    assert records[of_0_1_0.name]["stale"] == ["written by vip 0.1.0"]
    code, out, _ = cli("cache", "info")
    assert code == 0 and f"stale: {older_torch.name} (torch 1.13.0, now {torch.__version__}; backbone 'clip' code " \
        "changed): never read again here" in " ".join(out.split())
    assert "`vip cache clear --stale` removes the 2 stale folders" in out
    code, out, _ = cli("cache", "clear", "--stale", "--backbone", "nope")
    assert code == 0 and "nothing to remove: no cached features of backbone 'nope'" in out, out
    code, out, _ = cli("cache", "clear", "--stale")
    assert code == 0 and "removed 2 stale feature folders: 48 entries" in out, out
    assert sorted(p.name for p in (cache / "features").iterdir()) == [current.name]
    assert len(list(current.rglob("*.safetensors"))) == 24


def test_cache_clear_removes_only_what_vip_wrote(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    """A cache root that is also someone's project folder: their files under features/ and llm/ stay."""
    cache = tmp_path / "project"
    monkeypatch.setenv("VIP_CACHE_DIR", str(cache))
    assert cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))[0] == 0
    (cache / "llm").mkdir()
    (cache / "llm" / f"{'cd' * 32}.json").write_text('{"answer": "x"}')
    mine = [cache / "features" / "resnet50_feats.npy", cache / "llm" / "prompts.md",
            next((cache / "features").glob("clip-*")) / "notes.txt"]
    for path in mine:
        path.write_text("not vip's")
    shard = next(p for p in next((cache / "features").glob("clip-*")).iterdir() if p.is_dir())
    (shard / "tmpab12_x9z.tmp").write_bytes(b"an interrupted write of vip 0.1.0")  # vip's: removed
    code, out, err = cli("cache", "clear")
    assert code == 0 and "removed 24 feature entries" in out
    assert all(path.read_text() == "not vip's" for path in mine)
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == ["notes.txt", "prompts.md", "resnet50_feats.npy"]
    assert "kept 3 file(s)" in err and "features/resnet50_feats.npy" in err


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_just_after_cache_clear_finished_says_the_cache_was_cleared(cli, tmp_path, monkeypatch,
                                                                                     signum):
    """Ctrl-C (or SIGTERM) after `vip cache clear` had removed everything and printed so: it printed
    "removed ..." and then "interrupted; nothing half-written was left behind", and the user could not
    tell whether the cache was cleared. Now the one error line says the work was complete."""
    import os
    import signal

    from vipcli.cli import cache as cache_command

    cache = tmp_path / "cache"
    monkeypatch.setenv("VIP_CACHE_DIR", str(cache))
    (cache / "llm").mkdir(parents=True)
    (cache / "llm" / f"{'ab' * 32}.json").write_text('{"answer": "x"}')
    monkeypatch.setattr(cache_command, "_warn_kept", lambda *args: os.kill(os.getpid(), getattr(signal, signum)))
    code, out, err = cli("cache", "clear")
    what = "interrupted" if signum == "SIGINT" else "terminated (SIGTERM)"
    assert code == (130 if signum == "SIGINT" else 143) and "removed 0 feature entries" in out
    assert error_lines(err) == [f"error: {what} after the command had finished; its work is complete"]
    assert not (cache / "llm").exists()


def test_a_ctrl_c_while_a_finished_command_returns_says_its_work_is_complete(cli, tmp_path, monkeypatch):
    """The milliseconds in which click unwinds after any command has returned (its context closing)."""
    import os
    import signal

    from vipcli.cli.help import HelpCommand

    closed = []
    original = HelpCommand.context_class.__exit__

    def close_under_ctrl_c(self, *exception):
        if self.command.name == "info" and self._depth == 1 and not closed:  # its last exit: it closes
            closed.append(self)
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, *exception)

    monkeypatch.setenv("VIP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(HelpCommand.context_class, "__exit__", close_under_ctrl_c)
    code, out, err = cli("cache", "info")
    assert closed and code == 130 and "cache" in out
    assert error_lines(err) == ["error: interrupted after the command had finished; its work is complete"]


# --- a read-only or full cache: warn once, go on without it -----------------------------------------


def test_read_only_cache_warns_once_and_the_run_goes_on(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    read_only_folder(cache)
    monkeypatch.setenv("VIP_CACHE_DIR", str(cache))
    try:
        code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    finally:
        writable_again(cache)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "feature cache" in line]
    assert len(warnings) == 1 and "permission denied" in warnings[0] and "going on without it" in warnings[0]


@pytest.mark.parametrize("code_, words", [(errno.ENOSPC, "no space left on the device"),
                                          (errno.EROFS, "read-only file system")])
def test_full_or_read_only_cache_disk_warns_once_and_the_run_goes_on(cli, isic_small, tiny_clip, tmp_path,
                                                                     monkeypatch, code_, words):
    disk_fails_under(monkeypatch, "features", code_)
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "feature cache" in line]
    assert len(warnings) == 1 and words in warnings[0] and "going on without it" in warnings[0]
    assert not error_lines(err) and (tmp_path / "run" / "model.safetensors").is_file()



def test_turning_photos_upright_keys_the_cache_but_keeps_the_views_of_other_images(monkeypatch, tmp_path):
    """The orientation policy is part of an entry's key (old entries are not served) but not of the seed
    of augmented views: an image without an EXIF orientation keeps the views, and so the figures, it had."""
    from vipcli import images
    from vipcli.features import FeatureCache
    from vipcli.registry import load_backbone

    backbone = load_backbone("toy", device="cpu")
    before = FeatureCache(tmp_path, backbone)
    monkeypatch.setattr(images, "ORIENTATION_POLICY", "another orientation policy")  # the policy's one home
    after = FeatureCache(tmp_path, backbone)
    assert after.key != before.key and after.augmentation == before.augmentation


def test_the_bit_depth_policy_keys_the_cache_but_keeps_the_views_of_8_bit_images(monkeypatch, tmp_path):
    """Reading 12-bit data by its own bit depth changes the features of such images (old entries are
    not served) but not the seed of augmented views: an 8-bit image keeps the views, and figures, it had."""
    from vipcli import images
    from vipcli.cache_admin import stale_reasons
    from vipcli.features import FeatureCache
    from vipcli.registry import load_backbone

    backbone = load_backbone("toy", device="cpu")
    before = FeatureCache(tmp_path, backbone)
    assert before.identity["depth"] == images.DEPTH_POLICY
    monkeypatch.setattr(images, "DEPTH_POLICY", "another bit-depth policy")  # the policy's one home
    after = FeatureCache(tmp_path, backbone)
    assert after.key != before.key and after.augmentation == before.augmentation
    assert stale_reasons(before.identity) == ["another image decoder"]


@pytest.mark.parametrize("command", [("info",), ("info", "--json"), ("clear",), ("clear", "--stale")])
def test_cache_info_and_clear_refuse_a_vip_cache_dir_that_is_a_file(cli, tmp_path, monkeypatch, command):
    file = tmp_path / "cache.txt"
    file.write_text("not a cache")
    monkeypatch.setenv("VIP_CACHE_DIR", str(file))
    code, out, err = cli("cache", *command)
    assert code == 1 and out == "" and error_lines(err) == [
        f"error: VIP_CACHE_DIR {file} is a file, not a folder (point VIP_CACHE_DIR at a folder)"]
    assert file.read_text() == "not a cache"


@pytest.mark.parametrize("command", [("info",), ("info", "--json")])
def test_cache_info_warns_of_a_folder_every_user_can_write_which_the_other_commands_refuse(cli, tmp_path,
                                                                                         monkeypatch, command):
    """`VIP_CACHE_DIR=/tmp vip cache info` showed the folder as any other, and the next `vip train` refused it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("VIP_CACHE_DIR", str(shared))
    code, out, err = cli("cache", *command)
    assert code == 0 and str(shared) in out and err.splitlines() == [
        f"warning: VIP_CACHE_DIR {shared} is writable by every user: anyone on this machine could change the cached "
        "features or LLM answers that vip reads back; vip train, predict, benchmark and symptoms refuse to use it "
        f"(remove others' write permission (chmod o-w {shared}), or point VIP_CACHE_DIR at a folder of your own)"]
    shared.chmod(0o755)
    code, _, err = cli("cache", *command)
    assert code == 0 and err == ""


def test_feature_cache_entries_are_not_synced_one_by_one(backbone, isic_small, tmp_path, synced):
    """Hundreds of entries a run: syncing each would slow encoding; each carries a sha256 checked instead."""
    from vipcli.features import FeatureCache

    _encode(backbone, _images(isic_small), FeatureCache(tmp_path / "cache", backbone))
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 3
    [key_folder] = (tmp_path / "cache" / "features").iterdir()
    assert all("backbone.json" in path.name or path == key_folder for path in synced), synced  # identity: once


@pytest.mark.parametrize("columns", [40, 80])
def test_cache_info_never_cuts_a_backbone_id_or_folder_name(cli, tmp_path, monkeypatch, columns):
    """Piped to a file (80 columns) `vip cache info` showed `my-dermoscopy…` and `my-dermoscopy-b…`: the id
    `vip cache clear --backbone` takes, and the folder's name, were cut. They fold onto more lines instead."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("VIP_CACHE_DIR", str(cache))
    monkeypatch.setenv("COLUMNS", str(columns))
    name, arch = "my-dermoscopy-backbone-v2", "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    folder = cache / "features" / f"{name}-0123456789abcdef"
    folder.mkdir(parents=True)
    (folder / "backbone.json").write_text(json.dumps({"id": name, "describe": {"arch": arch}}))
    code, out, _ = cli("cache", "info")
    rows = [line.split("│") for line in out.split("┡")[1].split("│ LLM")[0].splitlines()[1:]]
    cells = ["".join(row[column].strip() for row in rows if len(row) > 6) for column in (1, 2, 5)]
    assert code == 0 and cells == [name, arch, folder.name], out


def _table_cells(out: str) -> list[dict[str, str]]:
    """The rows of `vip cache info`'s table, each cell's lines joined: a column starts where its heading does."""
    lines = out.splitlines()
    heading = next(index for index, line in enumerate(lines) if line.startswith("backbone "))
    names = lines[heading].split()
    starts = [lines[heading].index(name) for name in names]
    rows = []
    for line in lines[heading + 2:]:
        if not line.strip() or line.startswith(("stale:", "`vip cache")):
            break
        cells = [line[start:end].strip() for start, end in zip(starts, starts[1:] + [None])]
        if cells[0]:
            rows.append(dict(zip(names, cells)))
        else:
            rows[-1] = {name: rows[-1][name] + cell for name, cell in zip(names, cells)}
    return rows


def test_cache_info_at_80_columns_keeps_each_folder_name_on_one_line(cli, tmp_path, monkeypatch):
    """At 80 columns (piped to a file) `vip cache info` broke `clip-e5ee6e4b837` / `25fc6` over two lines beside a
    long BiomedCLIP arch: the name a user copies to find the folder. The arch folds; the ids stay whole."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("VIP_CACHE_DIR", str(cache))
    monkeypatch.setenv("COLUMNS", "80")
    for name, arch in [("biomedclip", "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"),
                       ("clip", "ViT-B-16-quickgelu")]:
        folder = cache / "features" / f"{name}-e5ee6e4b83725fc6"
        folder.mkdir(parents=True)
        (folder / "backbone.json").write_text(json.dumps({"id": name, "describe": {"arch": arch}}))
    code, out, _ = cli("cache", "info")
    table = out.split("\n", 1)[1].split("\nstale:")[0].splitlines()
    assert code == 0 and max(len(line) for line in table) <= 80, out
    assert [line.split()[0] for line in table if "-e5ee6e4b83725fc6 " in line] == ["biomedclip", "clip"], out
    assert [row["arch"] for row in _table_cells(out)[:2]] == ["hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_"
                                                              "patch16_224", "ViT-B-16-quickgelu"]



def _shared_cache_and_no_backbone(tmp_path, monkeypatch) -> Path:
    """VIP_CACHE_DIR at a new folder every user can write (returned), and a backbone that fails to load, saying so:
    a command that loads it before refusing the folder ends with "the backbone was loaded"."""
    import vipcli.registry

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("VIP_CACHE_DIR", str(shared))

    def load_backbone(*args, **kwargs):
        raise RuntimeError("the backbone was loaded")

    monkeypatch.setattr(vipcli.registry, "load_backbone", load_backbone)
    return shared


@pytest.mark.parametrize("command", ["train", "benchmark", "symptoms rank", "predict"])
def test_a_cache_folder_every_user_can_write_is_refused_before_the_backbone_loads(cli, monkeypatch, tmp_path,
                                                                                 command):
    """train, benchmark and symptoms rank loaded the backbone (seconds for a real CLIP; train printed its plan
    first), and predict the run's, before the cache folder was refused; `--no-cache` is not refused."""
    from lesion_runs import make_lesions

    shared = _shared_cache_and_no_backbone(tmp_path, monkeypatch)
    data = make_lesions(tmp_path / "lesions", {"train": 2, "val": 2, "test": 2})
    fixture = Path(__file__).parent / "fixtures" / "run-v0.1.0"
    args = {"train": ["train", "--data", data, "--backbone", "toy", "--out", tmp_path / "run"],
            "benchmark": ["benchmark", "--data", data, "--backbone", "toy", "--out", tmp_path / "bench"],
            "symptoms rank": ["symptoms", "rank", "--data", data, "--backbone", "toy"],
            "predict": ["predict", fixture / "images", "--model", fixture / "vip"]}[command]
    code, out, err = cli(*args, "--device", "cpu")
    assert code == 1 and err.splitlines() == [
        f"error: VIP_CACHE_DIR {shared} is writable by every user: anyone on this machine could change the cached "
        f"features or LLM answers that vip reads back (remove others' write permission (chmod o-w {shared}), or point "
        "VIP_CACHE_DIR at a folder of your own)"]
    code, _, err = cli(*args, "--device", "cpu", "--no-cache")
    assert code == 1 and error_lines(err) == ["error: unexpected RuntimeError: the backbone was loaded (this is a "
                                              "bug in vip; rerun with VIP_DEBUG=1 and report the traceback)"]


def test_no_cache_with_a_local_weights_file_reads_and_writes_nothing_in_the_cache_folder(cli, monkeypatch, tmp_path,
                                                                                       tiny_clip):
    """`--no-cache` with `--pretrained FILE` was refused in a cache folder every user can write: the file's digest
    was still looked up in (and written to) the cache's digests/. With `--no-cache` the file is read instead."""
    from lesion_runs import make_lesions
    from vipcli import digests
    from vipcli.registry import load_backbone

    model = load_backbone("clip", str(tiny_clip), "none").model
    weights = tmp_path / "w.safetensors"
    save_file({k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}, weights)
    monkeypatch.setattr(digests, "_MEMO", {})  # a new process: only the cache folder could remember the digest
    data = make_lesions(tmp_path / "lesions", {"train": 2, "val": 2, "test": 2})
    backbone = ["--backbone", "clip", "--arch", tiny_clip, "--pretrained", weights]
    quick = ["--device", "cpu", "--workers", "0", "--views", "1", "--no-cache", "-q"]
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("VIP_CACHE_DIR", str(shared))
    commands = [["train", "--data", data, *backbone, "--epochs", "1", "--out", tmp_path / "run", *quick],
                ["benchmark", "--data", data, *backbone, "--methods", "zeroshot", "--shots", "1", "--seeds", "1",
                 "--out", tmp_path / "bench", *quick],
                ["symptoms", "rank", "--data", data, *backbone, *quick[:4], "--no-cache"],
                ["predict", data / "test", "--model", tmp_path / "run", *quick[:4], "--no-cache"]]
    for command in commands:
        code, _, err = cli(*command)
        assert code == 0 and "error" not in err, (command[0], err)
    assert list(shared.iterdir()) == []
    from vipcli import api
    from vipcli.errors import VipError

    digests._MEMO.clear()  # from Python, as `vip predict --no-cache`: the same run loads and predicts
    model = api.load(tmp_path / "run", device="cpu", use_cache=False)
    image = next(path for path in sorted((data / "test").rglob("*")) if path.is_file())
    assert model.predict(image, use_cache=False).label in model.classes and list(shared.iterdir()) == []
    digests._MEMO.clear()  # a new process
    with pytest.raises(VipError, match="writable by every user"):  # with the cache: refused, as the CLI is
        api.load(tmp_path / "run", device="cpu")
    shared.chmod(0o755)  # trusted, and still nothing remembered there with --no-cache
    code, _, err = cli(*commands[-1])
    assert code == 0 and list(shared.iterdir()) == []
    digests._MEMO.clear()  # a new process
    code, _, err = cli(*commands[-1][:-1])  # with the cache: the digest is remembered there
    assert code == 0 and (shared / digests.DIGESTS_FOLDER).is_dir()


def test_report_refuses_a_cache_folder_every_user_can_write_before_the_backbone_loads(cli, monkeypatch, tmp_path):
    """`vip report` of a run (whose gallery reads cached features) loaded the run's backbone before the folder
    was refused, as the other commands no longer did."""
    shared = _shared_cache_and_no_backbone(tmp_path, monkeypatch)
    fixture = Path(__file__).parent / "fixtures" / "run-v0.1.0" / "vip"
    code, out, err = cli("report", fixture, "--out", tmp_path / "report.html", "--device", "cpu")
    assert (code, out) == (1, "") and err.splitlines() == [
        f"error: VIP_CACHE_DIR {shared} is writable by every user: anyone on this machine could change the cached "
        f"features or LLM answers that vip reads back (remove others' write permission (chmod o-w {shared}), or point "
        "VIP_CACHE_DIR at a folder of your own)"]
    assert not (tmp_path / "report.html").exists()
    shared.chmod(0o755)  # trusted: the report goes on to load the backbone
    code, _, err = cli("report", fixture, "--out", tmp_path / "report.html", "--device", "cpu")
    assert code == 1 and "the backbone was loaded" in err


def test_a_cache_folder_every_user_can_write_is_refused_and_one_of_another_user_warned_about(cli, monkeypatch,
                                                                                             tmp_path, capsys):
    """VIP_CACHE_DIR=/tmp (or a folder made with chmod 777) was used as it was: anyone on the machine could plant
    features or LLM answers that vip read back as its own, changing predictions or generated packs. It is now
    refused before anything is read or asked; a folder of another user is used with a warning."""
    import os
    import stat

    import vipcli.cache_trust
    from vipcli.cache_admin import default_root
    from vipcli.errors import VipError

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("VIP_CACHE_DIR", str(shared))
    code, _, err = cli("symptoms", "generate", "--disease", "melanoma", "--base-url", "http://127.0.0.1:9/v1",
                       "--out", tmp_path / "melanoma.yaml")
    line, = error_lines(err)
    assert code == 1 and line == (
        f"error: VIP_CACHE_DIR {shared} is writable by every user: anyone on this machine could change the cached "
        f"features or LLM answers that vip reads back (remove others' write permission (chmod o-w {shared}), or point "
        "VIP_CACHE_DIR at a folder of your own)")
    assert not (tmp_path / "melanoma.yaml").exists()
    shared.chmod(0o777 | stat.S_ISVTX)  # a shared temporary folder as /tmp: never advised to close it
    with pytest.raises(VipError, match="writable by every user") as refused:
        default_root()
    assert "chmod" not in refused.value.hint and "folder of your own, or unset it" in refused.value.hint
    code, out, _ = cli("cache", "info")  # reads no entry back: the folder can still be inspected and cleared
    assert code == 0 and str(shared) in out

    shared.chmod(0o755)
    assert default_root() == shared
    if os.getuid() == 0:
        os.chown(shared, 65534, -1)
    else:
        monkeypatch.setattr(os, "getuid", lambda: shared.stat().st_uid + 1)
    monkeypatch.setattr(vipcli.cache_trust, "_warned", set())
    capsys.readouterr()
    assert default_root() == shared and default_root() == shared
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and f"VIP_CACHE_DIR {shared} belongs to another user" in warned[0]
