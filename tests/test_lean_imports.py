"""The `vip` command imports open_clip without transformers for a model whose text tower does not use it,
and a model whose text tower does still loads in the same process (`vipcli.lean_imports`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_train_args

SCRIPT = """
import json, sys
from vipcli import lean_imports
from vipcli.registry import load_backbone
lean_imports.enabled = {enabled}
seen = {{}}
clip = load_backbone("clip", {clip!r}, "none", warn_random=False)
seen["after_clip"] = "transformers" in sys.modules
bert = load_backbone("biomedclip", {biomed!r}, "none", warn_random=False)
seen["after_biomedclip"] = "transformers" in sys.modules
seen["bert_features"] = list(bert.encode_text(bert.tokenize(["a dark irregular lesion"])).shape)
print(json.dumps(seen))
"""


def _run(enabled: bool, tiny_clip, tiny_biomedclip) -> dict:
    script = SCRIPT.format(enabled=enabled, clip=str(tiny_clip), biomed=str(tiny_biomedclip))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_command_leaves_transformers_out_until_a_model_needs_it(tiny_clip, tiny_biomedclip):
    seen = _run(True, tiny_clip, tiny_biomedclip)
    assert seen["after_clip"] is False  # CLIP's own text tower: transformers never imported
    assert seen["after_biomedclip"] is True  # a BERT text tower later in the process: imported then, and it works
    assert seen["bert_features"][0] == 1


def test_the_python_interface_imports_open_clip_as_it_imports_itself(tiny_clip, tiny_biomedclip):
    seen = _run(False, tiny_clip, tiny_biomedclip)
    assert seen["after_clip"] is True  # open_clip imported transformers, as it does on its own (CoCa's generation)


def test_only_configs_known_without_open_clip_skip_transformers(tiny_clip, tiny_biomedclip):
    from vip_backbones.openclip_base import text_tower_needs_transformers

    assert not text_tower_needs_transformers(str(tiny_clip), None)
    assert not text_tower_needs_transformers("small-clip", None)  # a config shipped with vip
    assert not text_tower_needs_transformers("ViT-B-16-quickgelu", None)  # one of open_clip's, read as a file
    assert text_tower_needs_transformers(str(tiny_biomedclip), None)
    assert text_tower_needs_transformers("hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", None)
    assert text_tower_needs_transformers("ViT-B-16", "local-dir:/models/biomedclip")  # the folder's model counts
    assert text_tower_needs_transformers("no-such-model", None)  # unknown: imported as open_clip imports itself


def test_an_hf_hub_model_in_the_hubs_local_cache_is_read_from_it(tiny_clip, tiny_biomedclip, tmp_path, monkeypatch):
    """An `hf-hub:` CLIP whose text tower is CLIP's own imported transformers on every run, though open_clip's first
    load had left its config in the hub's cache: it is now read there, as open_clip reads it (`main`)."""
    import huggingface_hub.constants

    from vip_backbones.openclip_base import text_tower_needs_transformers

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for repo, config_file in (("laion/tiny-clip", tiny_clip), ("microsoft/tiny-biomedclip", tiny_biomedclip)):
        model = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
        (model / "refs").mkdir(parents=True)
        (model / "refs" / "main").write_text("0123abcd")
        (model / "snapshots" / "0123abcd").mkdir(parents=True)
        config = {"model_cfg": json.loads(Path(config_file).read_text()), "preprocess_cfg": {}}
        (model / "snapshots" / "0123abcd" / "open_clip_config.json").write_text(json.dumps(config))
    assert not text_tower_needs_transformers("hf-hub:laion/tiny-clip", None)
    assert not text_tower_needs_transformers("ViT-B-16", "hf-hub:laion/tiny-clip")  # --pretrained names the model
    assert text_tower_needs_transformers("hf-hub:microsoft/tiny-biomedclip", None)
    assert text_tower_needs_transformers("hf-hub:laion/not-downloaded", None)
    assert text_tower_needs_transformers("hf-hub:not a repo id", None)


def _local_dir(folder, config_file) -> str:
    """An open_clip `local-dir:` folder whose `open_clip_config.json` holds `config_file`'s model config."""
    folder.mkdir()
    model_cfg = json.loads(config_file.read_text())
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    return f"local-dir:{folder}"


def test_a_local_dir_model_is_judged_by_its_folders_config(tmp_path, tiny_clip, tiny_biomedclip):
    from vip_backbones.openclip_base import text_tower_needs_transformers

    clip_dir = _local_dir(tmp_path / "clip", tiny_clip)
    bert_dir = _local_dir(tmp_path / "bert", tiny_biomedclip)
    assert not text_tower_needs_transformers(clip_dir, None)  # CLIP's own text tower, read from the folder
    assert not text_tower_needs_transformers("ViT-B-16", clip_dir)  # --pretrained local-dir: is the model
    assert text_tower_needs_transformers(bert_dir, None)
    assert text_tower_needs_transformers("small-clip", bert_dir)  # the folder's model counts, not --arch
    assert text_tower_needs_transformers(f"local-dir:{tmp_path / 'missing'}", None)
    assert text_tower_needs_transformers("local-dir:", None)  # no folder: left to open_clip


@pytest.mark.parametrize("stop", [RuntimeError("a broken import"), KeyboardInterrupt()])
def test_a_block_left_by_an_error_or_ctrl_c_leaves_the_module_importable(monkeypatch, stop):
    from vipcli import lean_imports

    monkeypatch.setattr(lean_imports, "enabled", True)
    name = "json.vip_lean_probe"  # never a real module: only the marker can be in sys.modules
    with pytest.raises(type(stop)):
        with lean_imports.left_out(name):
            assert sys.modules[name] is None
            with pytest.raises(ImportError):
                __import__(name)
            raise stop
    assert name not in sys.modules


def test_a_block_changes_nothing_off_or_once_imported(monkeypatch):
    from vipcli import lean_imports

    with lean_imports.left_out("json.vip_lean_probe"):  # `enabled` off (the Python interface)
        assert "json.vip_lean_probe" not in sys.modules
    monkeypatch.setattr(lean_imports, "enabled", True)
    with lean_imports.left_out("json"):  # already imported: left as it is
        assert sys.modules["json"] is json
    assert sys.modules["json"] is json


def test_a_vip_train_process_imports_neither_scikit_learn_nor_scipy(isic_small, tiny_clip, tmp_path):
    """Its metrics, temperature scaling and test against chance are NumPy (`vipcli.metrics.binary_auroc`,
    `vipcli.calibration.fit_temperature`, `vipcli.chance`): scikit-learn's metrics and SciPy's `stats` and `optimize` cost every
    `vip train` about 1-3 s of imports on a 2-core CPU. A change that imports one of them again fails here."""
    out = tmp_path / "run"
    code = ("import atexit, sys\n"
            f"sys.argv = ['vip', *{[str(a) for a in tiny_train_args(isic_small, tiny_clip, out)]!r}]\n"
            "atexit.register(lambda: print('heavy:', sorted({m.split('.')[0] for m in sys.modules}\n"
            "                                              & {'sklearn', 'scipy', 'matplotlib'})))\n"
            "from vipcli.cli.main import run\n"
            "run()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "metrics.json").is_file()
    assert done.stdout.splitlines()[-1] == "heavy: []"
