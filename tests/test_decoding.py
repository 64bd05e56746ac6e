"""One set of decoding workers per command: `vip train`'s splits and `vip predict`'s chunks share them.

Each worker records its process id as it decodes (the workers are forks, so they inherit a patched
decoder); a command that started workers for every split or chunk shows more ids than `--workers`.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
import torch

from lesion_runs import trained_world

pytestmark = pytest.mark.skipif(multiprocessing.get_start_method() != "fork",
                                reason="the workers must inherit the patched decoder (fork)")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A lesion world and a toy-backbone run trained on it (once for the module)."""
    return trained_world(tmp_path_factory, {"train": 10, "val": 6, "test": 12})


@pytest.fixture
def decoder_ids(monkeypatch, tmp_path):
    """The ids of the processes that decoded images, read after the command."""
    from vipcli import features

    log = tmp_path / "decoders.txt"
    real = features.load_image

    def load(path, **options):
        with open(log, "a") as out:
            out.write(f"{os.getpid()}\n")
        return real(path, **options)

    monkeypatch.setattr(features, "load_image", load)
    return lambda: set(log.read_text().split()) if log.exists() else set()


def test_predict_to_a_file_decodes_every_chunk_in_the_same_workers(cli, toy_run, tmp_path, monkeypatch, decoder_ids):
    from vipcli import predict as predict_module

    data, run = toy_run
    monkeypatch.setattr(predict_module, "FIRST_CHUNK", 8)
    monkeypatch.setattr(predict_module, "CHUNK", 8)  # 24 test images: three chunks
    out = tmp_path / "p.jsonl"
    code, _, err = cli("predict", data / "test", "--model", run, "--out", out, "--workers", "2", "--no-cache")
    assert code == 0, err
    assert len(out.read_text().splitlines()) == 24
    ids = decoder_ids()
    assert str(os.getpid()) not in ids and len(ids) == 2  # two workers for the three chunks, not six
    assert multiprocessing.active_children() == []  # and they stopped with the command


def test_train_decodes_its_splits_in_the_same_workers(cli, toy_run, tmp_path, decoder_ids):
    data, _ = toy_run
    code, _, err = cli("train", "--data", data, "--backbone", "toy", "--shots", "all", "--epochs", "1",
                       "--workers", "2", "--out", tmp_path / "run")
    assert code == 0, err
    ids = decoder_ids()
    assert str(os.getpid()) not in ids and len(ids) == 2  # train, val and test: two workers, not six
    assert multiprocessing.active_children() == []


def test_a_sweep_decodes_what_it_encodes_in_the_same_workers(cli, toy_run, tmp_path, decoder_ids):
    data, _ = toy_run
    code, _, err = cli("benchmark", "--data", data, "--backbone", "toy", "--methods", "linear-probe", "--shots", "2",
                       "--seeds", "1,2", "--workers", "2", "--out", tmp_path / "sweep")
    assert code == 0, err
    ids = decoder_ids()
    assert str(os.getpid()) not in ids and len(ids) == 2  # two seeds' shots, val and test: two workers in all
    assert multiprocessing.active_children() == []


def test_a_pass_that_fails_stops_the_shared_workers_and_the_next_list_starts_new_ones(tmp_path, monkeypatch,
                                                                                   decoder_ids):
    from PIL import Image

    from vipcli import features
    from vipcli.decoding import DecodingWorkers
    from vipcli.registry import load_backbone

    paths = []
    for number in range(8):
        paths.append(tmp_path / f"{number}.png")
        Image.new("RGB", (32, 32), (30 * number, 90, 10)).save(paths[-1])
    backbone, logged = load_backbone("toy"), features.load_image

    def load(path, **options):
        if Path(path).name == "3.png" and os.environ.get("VIP_TEST_FAULT"):
            raise TypeError("a decoder's own fault")
        return logged(path, **options)

    monkeypatch.setattr(features, "load_image", load)
    with DecodingWorkers(2, 16) as shared:
        monkeypatch.setenv("VIP_TEST_FAULT", "1")  # the workers start now and inherit it
        with pytest.raises(TypeError, match="a decoder's own fault"):
            features.encode_images(backbone, paths, workers=2, shared=shared)
        assert multiprocessing.active_children() == []  # stopped at once, not at exit
        monkeypatch.delenv("VIP_TEST_FAULT")
        encoded = features.encode_images(backbone, paths, workers=2, shared=shared)
        assert sorted(encoded.eval) == list(range(8))
        assert len(multiprocessing.active_children()) == 2  # fresh workers, kept for the next list
    assert multiprocessing.active_children() == []


def test_a_prediction_stream_closed_early_stops_its_workers(toy_run):
    import contextlib

    from vipcli.predict import load_predictor, stream_predictions

    data, run = toy_run
    predictor = load_predictor(run)
    paths = sorted((data / "test").rglob("*.png"))
    with contextlib.closing(stream_predictions(predictor, paths, workers=2, chunk=8)) as results:
        first = next(results)
        assert first[1] is not None
        assert len(multiprocessing.active_children()) == 2
    assert multiprocessing.active_children() == []


def test_views_travel_in_groups_in_order_and_every_job_once():
    from vipcli.features import GROUP_VIEWS, view_groups

    jobs = [(i, f"{i}.png", "c", True, 0, 0) for i in range(827)]  # vip predict: one view an image
    groups = view_groups(jobs, 16)
    assert [job for group in groups for job in group] == jobs
    assert {len(g) for g in groups[:-1]} == {min(GROUP_VIEWS, 827 // 64)}
    trained = [(i, f"{i}.png", "c", True, 0, 9) for i in range(40)]  # ten views an image, 2 workers: 5 per group
    assert [len(g) for g in view_groups(trained, 2)] == [2] * 20
    assert [len(g) for g in view_groups(jobs[:6], 2)] == [1] * 6  # a short list: a group an image


def test_a_group_with_unreadable_images_gives_every_readable_one_its_own_views(tmp_path):
    from PIL import Image

    from vipcli.features import encode_images
    from vipcli.registry import load_backbone

    paths = []
    for number in range(40):
        paths.append(tmp_path / f"{number}.png")
        if number % 7 == 3:
            paths[-1].write_bytes(b"not an image")
        else:
            Image.new("RGB", (40, 32), (6 * number, 90, 255 - 6 * number)).save(paths[-1])
    backbone = load_backbone("toy")
    together = encode_images(backbone, paths, views=2, workers=2)  # groups of several images, in 2 workers
    in_turn = encode_images(backbone, paths, views=2, workers=0)  # decoded here, the same encoder batches
    alone = [encode_images(backbone, [path], views=2, workers=0) for path in paths]  # a batch of its own
    unreadable = {path for path, one in zip(paths, alone) if one.failures}
    assert set(together.failures) == unreadable and len(unreadable) == 6
    for index, one in enumerate(alone):  # each image its own views (a batch's rounding aside)
        if one.eval:
            assert torch.allclose(together.eval[index], one.eval[0], atol=1e-4)
            assert torch.allclose(together.train[index], one.train[0], atol=1e-4)
    assert sorted(together.eval) == sorted(in_turn.eval) == [i for i, p in enumerate(paths) if p not in unreadable]
    for index in in_turn.eval:
        assert together.eval[index].equal(in_turn.eval[index]) and together.train[index].equal(in_turn.train[index])
