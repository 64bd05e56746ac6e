"""Loading a backbone fast without changing it: weights handed over, not copied; phases recorded."""

from __future__ import annotations

import gc
import json
import sys

import pytest
import torch

from conftest import tiny_train_args
from vipcli.errors import VipError
from vipcli.registry import load_backbone

TEXTS = ["The spot is asymmetric on both sides.", "a photo of a nevus."]


@pytest.fixture(scope="module")
def random_clip(tiny_clip):
    return load_backbone("clip", str(tiny_clip), "none", warn_random=False)


def _save(state: dict, path) -> str:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in state.items()}, path)
    return str(path)


def _parameter_copies(monkeypatch) -> list:
    """Record every `copy_` into a parameter (what a copying `load_state_dict` does per weight)."""
    copies = []
    real = torch.Tensor.copy_

    def spy(self, *args, **kwargs):
        if isinstance(self, torch.nn.Parameter):
            copies.append(tuple(self.shape))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "copy_", spy)
    return copies


def test_a_weights_file_on_the_cpu_is_handed_to_the_model_and_gives_the_same_features(
        tmp_path, tiny_clip, random_clip, monkeypatch):
    weights = _save(random_clip.model.state_dict(), tmp_path / "tiny.safetensors")
    copies = _parameter_copies(monkeypatch)
    loaded = load_backbone("clip", str(tiny_clip), weights)
    assert copies == []  # no parameter was allocated and then overwritten
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, random_clip.model.state_dict()[name]), name
    assert all(not p.requires_grad for p in loaded.model.parameters())
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ids = loaded.tokenize(TEXTS)
    assert torch.equal(loaded.encode_image(images), random_clip.encode_image(images))  # bit for bit
    assert torch.equal(loaded.encode_text(ids), random_clip.encode_text(ids))


def test_float16_weights_for_a_float32_model_are_converted_as_before(tmp_path, tiny_clip, random_clip, monkeypatch):
    half = {k: v.half() if v.is_floating_point() else v for k, v in random_clip.model.state_dict().items()}
    weights = _save(half, tmp_path / "tiny-fp16.safetensors")
    copies = _parameter_copies(monkeypatch)
    loaded = load_backbone("clip", str(tiny_clip), weights)
    assert copies  # copied (and converted) into the float32 parameters, as open_clip always did
    for name, tensor in loaded.model.state_dict().items():
        assert tensor.dtype == random_clip.model.state_dict()[name].dtype
        assert torch.equal(tensor, half[name].to(tensor.dtype)), name


def test_a_model_whose_weights_never_come_is_an_error_not_uninitialised_memory(tmp_path, tiny_clip):
    folder = tmp_path / "no-weights"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": json.loads(tiny_clip.read_text())}))
    with pytest.raises(VipError) as error:
        load_backbone("clip", f"local-dir:{folder}")
    assert "no weights were found" in str(error.value) and "--pretrained" in str(error.value)


def test_load_phases_say_where_the_seconds_went_and_that_checks_are_remembered(tmp_path, tiny_clip, random_clip):
    weights = _save(random_clip.model.state_dict(), tmp_path / "tiny.safetensors")
    first = load_backbone("clip", str(tiny_clip), weights).load_phases
    assert first["checks"] == "ran"
    for key in ("construct_s", "import_s", "build_s", "weights_s", "tokenizer_s", "checks_s"):
        assert isinstance(first[key], float) and first[key] >= 0, key
    assert first["construct_s"] >= first["build_s"] + first["weights_s"]
    second = load_backbone("clip", str(tiny_clip), weights).load_phases
    assert second["checks"] == "remembered"
    assert load_backbone("clip", str(tiny_clip), weights, check=False).load_phases["checks"] == "off"


def test_a_run_records_its_backbone_load_phases(cli, isic_small, tiny_clip, tmp_path):
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    assert code == 0, err
    phases = json.loads((tmp_path / "run" / "metrics.json").read_text())["timings"]["backbone_load"]
    assert phases["checks"] in ("ran", "remembered") and phases["construct_s"] >= 0


def test_the_vip_process_exits_with_mains_code_and_spares_shutdown_collections(monkeypatch):
    import vipcli.cli.main as main
    import vipcli.registry as registry

    assert "torch" in sys.modules
    monkeypatch.setattr(main, "main", lambda: 3)
    monkeypatch.setattr(registry, "freeze_after_loads", False)  # run() turns it on: restored after the test
    frozen = gc.get_freeze_count()
    try:
        with pytest.raises(SystemExit) as exit_:
            main.run()
        assert exit_.value.code == 3
        assert gc.get_freeze_count() > frozen
        assert registry.freeze_after_loads  # the `vip` process's backbone loads freeze what they leave alive
    finally:
        gc.unfreeze()


def test_no_garbage_collection_runs_while_a_backbone_is_built(monkeypatch):
    import vipcli.registry as registry

    real = registry.backbone_class("toy")
    seen = []

    def factory(**options):
        seen.append(gc.isenabled())
        return real(**options)

    monkeypatch.setattr(registry, "backbone_class", lambda backbone_id: factory)
    assert gc.isenabled()
    load_backbone("toy")
    assert seen == [False] and gc.isenabled()  # paused while building, on again after
    gc.disable()
    try:
        load_backbone("toy")
        assert not gc.isenabled()  # a caller that turned it off keeps it off
    finally:
        gc.enable()


def test_the_vip_process_freezes_what_a_backbone_load_leaves_alive(monkeypatch):
    """The `vip` command's later full collections (one while a sweep trains, one at exit) walked the ~450,000
    objects the libraries and the backbone made; after a load in the `vip` process they are collected once and
    frozen out of later passes. A load through the Python interface leaves the collector as it was."""
    import vipcli.registry as registry

    frozen = gc.get_freeze_count()
    try:
        load_backbone("toy")
        assert gc.get_freeze_count() == frozen  # the Python interface: nothing frozen
        monkeypatch.setattr(registry, "freeze_after_loads", True)
        load_backbone("toy")
        assert gc.get_freeze_count() > frozen and gc.isenabled()
    finally:
        gc.unfreeze()


def test_a_second_load_frees_the_cycles_an_earlier_load_froze(monkeypatch):
    """`vip benchmark --speed` loads a backbone several times in one process: a cycle that was alive at one load
    (a finished run's objects) and dropped after it is freed at the next load, not kept frozen to the end."""
    import weakref

    import vipcli.registry as registry

    class Node:
        pass

    monkeypatch.setattr(registry, "freeze_after_loads", True)
    try:
        cycle = Node()
        cycle.me = cycle  # freed only by the collector
        watch = weakref.ref(cycle)
        load_backbone("toy")  # freezes the cycle with everything alive
        del cycle
        gc.collect()
        assert watch() is not None  # frozen: a plain collection passes it by
        load_backbone("toy")
        assert watch() is None
    finally:
        gc.unfreeze()
