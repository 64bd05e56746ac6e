"""The CLIP and BERT text paths, the plugin registry, and loading failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import error_lines
import torch

from text_paths import assert_equal_to_rounding, features_and_grads, parts_features_and_grads

from vipcli.digests import file_digest
from vipcli.errors import UsageError, VipError
from vipcli.registry import load_backbone

TEXTS = ["The spot is asymmetric on both sides.", "Air bronchogram sign", "a photo of a nevus."]


@pytest.fixture(scope="module")
def clip_backbone(tiny_clip):
    return load_backbone("clip", str(tiny_clip), "none")


@pytest.fixture(scope="module")
def bert_backbone(tiny_biomedclip):
    return load_backbone("biomedclip", str(tiny_biomedclip), "none")


@pytest.mark.parametrize("name", ["clip_backbone", "bert_backbone"])
def test_text_path_equals_the_models_own_encode_text(name, request):
    backbone = request.getfixturevalue(name)
    ids = backbone.tokenize(TEXTS)
    ours = backbone.encode_text_embeds(backbone.embed_tokens(ids), ids)
    theirs = backbone.model.encode_text(ids)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def _open_clip_text_path(backbone, embeds, ids):
    """open_clip's own text forward from token embeddings [N, L, W]: its transformer, then pooling [N, D]."""
    from open_clip.transformer import text_global_pool

    text, length = backbone.text, ids.shape[1]
    x = embeds + text.positional_embedding[:length]
    x = text.ln_final(text.transformer(x, attn_mask=text.attn_mask[:length, :length]))  # [N, L, W]
    return text_global_pool(x, ids, backbone.pool_type, eos_token_id=backbone.eos_id) @ text.text_projection


def _deep_clip(folder, **text_cfg):
    """A tiny CLIP with several blocks and heads (a head or layer mix-up shows) and LayerScale (dropping it shows)."""
    from tiny_models import write_tiny_clip_config

    config = write_tiny_clip_config(folder)
    spec = json.loads(config.read_text())
    spec["text_cfg"].update(layers=3, heads=4, ls_init_value=0.5, **text_cfg)
    config.write_text(json.dumps(spec))
    return load_backbone("clip", str(config), "none", warn_random=False)


@pytest.fixture(scope="module")
def deep_clip(tmp_path_factory):
    """Pooled at the end token, CLIP's way (`argmax`: it has the largest id)."""
    return _deep_clip(tmp_path_factory.mktemp("deep"))


@pytest.fixture(scope="module")
def eos_clip(tmp_path_factory):
    """Pooled at the first '.' (`eos` pooling with an id that is not the largest)."""
    return _deep_clip(tmp_path_factory.mktemp("deep-eos"), pool_type="eos", eos_id=269)


EOS_TEXTS = ["a dark spot. with irregular edges", "a round brown spot. on the skin", "many. colors and shapes"]


def _texts(backbone) -> list[str]:
    return EOS_TEXTS if backbone.pool_type == "eos" else TEXTS


@pytest.mark.parametrize("name", ["deep_clip", "eos_clip"])
def test_clip_text_path_computes_what_open_clip_computes_features_and_gradients(name, request):
    from vip_backbones.clip import _plain_block

    backbone = request.getfixturevalue(name)
    ids = backbone.tokenize(_texts(backbone))
    assert all(_plain_block(block) for block in backbone.text.transformer.resblocks)  # the fast path is taken
    assert backbone._pool_positions(ids) is not None
    for rows in (ids[:, :24], ids):  # trimmed, and the full context
        ours = features_and_grads(lambda b, e, i: b.encode_text_embeds(e, i), backbone, rows)
        assert_equal_to_rounding(ours, features_and_grads(_open_clip_text_path, backbone, rows))


@pytest.mark.parametrize("name", ["deep_clip", "eos_clip"])
@pytest.mark.parametrize("pack", [True, False], ids=["packed (CPU)", "padded (CUDA)"])
def test_pooled_text_blocks_equal_open_clips_tower_at_the_pooled_tokens(name, pack, request):
    from vip_backbones.clip import pooled_text_blocks

    backbone = request.getfixturevalue(name)
    ids = backbone.tokenize(_texts(backbone))[:, :24]
    pool_at = backbone._pool_positions(ids)
    assert len(set(pool_at.tolist())) == len(ids)  # rows of different lengths: packing drops tokens
    mask = backbone.text.attn_mask[:24, :24]
    transformer = backbone.text.transformer

    def ours(backbone, embeds, ids):
        return pooled_text_blocks(transformer, embeds, mask, pool_at, pack=pack)  # [N, W]

    def open_clips(backbone, embeds, ids):
        return transformer(embeds, attn_mask=mask)[torch.arange(len(ids)), pool_at]  # [N, W]

    assert_equal_to_rounding(features_and_grads(ours, backbone, ids), features_and_grads(open_clips, backbone, ids))


@pytest.mark.parametrize("name", ["deep_clip", "eos_clip"])
@pytest.mark.parametrize("groups", [[0] * 6, [0, 1, 0, 1, 1, 0], list(range(6))],
                         ids=["one group", "two groups", "each its own"])
def test_clip_computes_shared_prompt_parts_once_and_as_open_clip_would(name, groups, request):
    from vip_backbones.pooled_tower import pooled_rows

    backbone = request.getfixturevalue(name)
    ids = backbone.tokenize(_texts(backbone) * 2)[:, :24]  # [6, 24]
    shared, group, count = 4, torch.tensor(groups), max(groups) + 1  # the start token and 3 context vectors
    ours = parts_features_and_grads(lambda parts: backbone.encode_text_parts(parts, ids), backbone, ids, group, shared)
    assert_equal_to_rounding(ours, parts_features_and_grads(
        lambda parts: _open_clip_text_path(backbone, parts.embeds(), ids), backbone, ids, group, shared))
    pool_at = backbone._pool_positions(ids)  # and each group's shared tokens were computed once, on the CPU
    kept = pooled_rows(pool_at, ids.shape[1], True, group, shared)[0]
    assert len(kept) == count * shared + int((pool_at + 1 - shared).clamp(min=0).sum())


def test_clip_hands_the_groups_of_prompt_parts_to_its_tower_on_the_cpu(deep_clip, monkeypatch):
    import vip_backbones.clip as clip_module
    from vipcli.backbone import PromptParts

    seen = []
    tower = clip_module.pooled_text_blocks

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return tower(*args, **kwargs)

    monkeypatch.setattr(clip_module, "pooled_text_blocks", spy)
    ids = deep_clip.tokenize(TEXTS)[:, :16]
    words = deep_clip.embed_tokens(ids)
    group = torch.tensor([0, 0, 1])
    deep_clip.encode_text_parts(PromptParts(words[[0, 2], :3], group, words[:, 3:]), ids)
    assert seen[-1]["pack"] and seen[-1]["shared"] == 3 and seen[-1]["group"] is group


def test_a_clip_subclass_with_its_own_text_path_keeps_it_for_prompt_parts(deep_clip):
    from vip_backbones.clip import ClipBackbone
    from vipcli.backbone import PromptParts

    class Adapted(ClipBackbone):  # a plugin that changes the text features
        def encode_text_embeds(self, embeds, ids):
            features = super().encode_text_embeds(embeds, ids)
            return features + 0.5 * features.flip(-1)

    adapted = object.__new__(Adapted)
    adapted.__dict__.update(deep_clip.__dict__)  # the same towers, without building them again
    ids = adapted.tokenize(TEXTS)[:, :16]
    words = adapted.embed_tokens(ids)
    parts = PromptParts(words[:1, :3], torch.zeros(3, dtype=torch.long), words[:, 3:])
    torch.testing.assert_close(adapted.encode_text_parts(parts, ids), adapted.encode_text_embeds(parts.embeds(), ids))


def test_clip_text_blocks_compute_what_open_clip_computes(deep_clip):
    from vip_backbones.clip import run_text_blocks

    transformer, mask = deep_clip.text.transformer, deep_clip.text.attn_mask[:9, :9]
    x = torch.randn(3, 9, deep_clip.token_width)
    torch.testing.assert_close(run_text_blocks(transformer, x, mask), transformer(x, attn_mask=mask),
                               rtol=1e-5, atol=1e-5)


def test_clip_text_blocks_run_other_blocks_as_open_clip_defines_them(clip_backbone):
    from vip_backbones.clip import _plain_block, run_text_blocks

    class Traced(torch.nn.Module):  # not a plain ResidualAttentionBlock: must run its own forward
        def __init__(self, inner):
            super().__init__()
            self.inner, self.calls = inner, 0

        def get_weight_dtype(self):  # what open_clip's Transformer asks of its first block
            return self.inner.get_weight_dtype()

        def forward(self, x, attn_mask=None):
            self.calls += 1
            return self.inner(x, attn_mask=attn_mask)

    transformer = clip_backbone.text.transformer
    traced = Traced(transformer.resblocks[0])
    assert not _plain_block(traced)
    x = torch.randn(2, 7, clip_backbone.token_width)
    mask = clip_backbone.text.attn_mask[:7, :7]
    expected = transformer(x, attn_mask=mask)
    original = transformer.resblocks
    transformer.resblocks = torch.nn.ModuleList([traced])
    try:
        got = run_text_blocks(transformer, x, mask)
    finally:
        transformer.resblocks = original
    assert traced.calls == 1
    torch.testing.assert_close(got, expected)
    transformer.resblocks = torch.nn.ModuleList([traced])
    try:  # and the backbone's text path then runs the whole tower through run_text_blocks
        ids = clip_backbone.tokenize(TEXTS)
        assert clip_backbone._pool_positions(ids) is None
        clip_backbone.encode_text_embeds(clip_backbone.embed_tokens(ids), ids)
    finally:
        transformer.resblocks = original
    assert traced.calls == 2


@pytest.mark.parametrize("name", ["clip_backbone", "bert_backbone"])
def test_trimming_to_the_longest_prompt_changes_nothing(name, request):
    backbone = request.getfixturevalue(name)
    ids = backbone.tokenize(TEXTS)
    length = int(backbone.sequence_lengths(ids).max())
    assert length < ids.shape[1]
    trimmed = backbone.encode_text_embeds(backbone.embed_tokens(ids[:, :length]), ids[:, :length])
    torch.testing.assert_close(trimmed, backbone.model.encode_text(ids), rtol=1e-5, atol=1e-5)


def test_bert_tokenizer_knows_every_word(bert_backbone):
    ids = bert_backbone.tokenize(TEXTS)
    assert bert_backbone.tokenizer.tokenizer.unk_token_id not in ids.tolist()[0]


@pytest.mark.parametrize("name", ["clip_backbone", "bert_backbone"])
def test_backbone_is_frozen_and_random_init_is_reproducible(name, request, tiny_clip, tiny_biomedclip):
    backbone = request.getfixturevalue(name)
    assert not any(p.requires_grad for p in backbone.model.parameters())
    config = tiny_clip if name == "clip_backbone" else tiny_biomedclip
    again = load_backbone(backbone.id, str(config), "none")
    ids = backbone.tokenize(TEXTS)
    torch.testing.assert_close(again.encode_text(ids), backbone.encode_text(ids))
    assert again.fingerprint() == backbone.fingerprint()


def test_backbones_list_shows_the_built_ins(cli):
    code, out, _ = cli("backbones", "list", "--json")
    assert code == 0
    ids = {entry["id"]: entry for entry in json.loads(out)}
    assert {"clip", "biomedclip"} <= set(ids)
    assert ids["clip"]["target"] == "vip_backbones.clip:ClipBackbone"


def test_backbones_list_folds_a_long_plugin_path_rather_than_cutting_it(cli, monkeypatch):
    """At 80 columns a third-party backbone's `loads` (module:Class) was cut with an ellipsis."""
    from vipcli.plugins import PluginInfo

    long = PluginInfo("meanpool", "vip_meanpool_backbone.backbones.mean_pooling:MeanPoolingBackbone",
                      "vip-meanpool-backbone", "0.1.0")
    monkeypatch.setattr("vipcli.cli.backbones.list_backbones", lambda: [long])
    monkeypatch.setattr("vipcli.cli.backbones._problem", lambda info: None)
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = cli("backbones", "list")
    assert code == 0 and "…" not in out
    assert long.target in "".join(line.split("│")[-2].strip() for line in out.splitlines() if line.count("│") == 4)


def test_unknown_backbone_lists_installed_ids():
    with pytest.raises(UsageError) as error:
        load_backbone("nope")
    assert "clip" in str(error.value) and "biomedclip" in str(error.value)


def test_unknown_arch_and_tag_are_usage_errors(monkeypatch):
    from vip_backbones import hub

    with pytest.raises(UsageError, match="unknown open_clip architecture"):
        load_backbone("clip", "ViT-Nope-99", "none")
    monkeypatch.setattr(hub, "hub_unreachable_reason", lambda: None)  # online: open_clip knows the tags
    with pytest.raises(UsageError, match="openai"):
        load_backbone("clip", "ViT-B-32", "no-such-tag")


def test_offline_with_an_empty_cache_fails_before_importing_open_clip(monkeypatch, tmp_path):
    """The fresh-machine case: nothing cached, no network; no library import, no model built."""
    import sys

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setitem(sys.modules, "open_clip", None)  # importing it now would fail the test
    with pytest.raises(VipError) as error:
        load_backbone("clip", None, None)
    assert str(error.value).startswith("could not load weights 'openai' for ViT-B-16-quickgelu: not in the local "
                                       f"cache ({tmp_path / 'empty-cache'}) and offline mode is on")


def test_an_unknown_arch_offline_is_named_as_such_before_importing_open_clip(monkeypatch, tmp_path):
    """Offline, `--arch ViT-B-16-nope` said its weights 'openai' could not be downloaded: the fix named
    (download them) could never work."""
    import sys

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setitem(sys.modules, "open_clip", None)  # importing it now would fail the test
    with pytest.raises(UsageError, match="unknown open_clip architecture 'ViT-B-16-nope'"):
        load_backbone("clip", "ViT-B-16-nope", None)
    with pytest.raises(VipError, match="could not load weights 'openai' for ViT-B-16: not in the local cache"):
        load_backbone("clip", "ViT-B-16", None)  # a name open_clip has: its weights are what is missing


def test_missing_weights_offline_is_one_clear_cli_line(cli, isic_small):
    code, out, err = cli("train", "--data", isic_small, "--arch", "RN50", "--pretrained", "openai", "--device", "cpu")
    assert code == 1
    assert error_lines(err)[0].startswith("error: could not load weights 'openai' for RN50")
    assert len(error_lines(err)) == 1 and "Traceback" not in err and "Traceback" not in err and "--pretrained none" in err


def test_missing_weights_offline_is_one_line(monkeypatch, tiny_clip):
    with pytest.raises(VipError) as error:
        load_backbone("clip", "RN50", "openai")
    message = str(error.value)
    assert "could not load weights 'openai'" in message and "--pretrained" in message and "none" in message


def test_local_weights_file_is_loaded(tmp_path, tiny_clip, clip_backbone):
    from safetensors.torch import save_file

    state = {k: v.clone() + 0.01 for k, v in clip_backbone.model.state_dict().items() if v.is_floating_point()}
    weights = tmp_path / "tiny-weights.safetensors"
    save_file(state, weights)
    loaded = load_backbone("clip", str(tiny_clip), str(weights))
    ids = loaded.tokenize(TEXTS)
    torch.testing.assert_close(loaded.model.token_embedding.weight, state["token_embedding.weight"])
    assert not torch.allclose(loaded.encode_text(ids), clip_backbone.encode_text(ids))
    assert loaded.describe()["weights"] == {"file": weights.name, "size": weights.stat().st_size,
                                            "sha256": file_digest(weights)}
    assert loaded.fingerprint() != clip_backbone.fingerprint()


def test_a_weights_file_is_identified_by_its_content_not_its_path_or_dates(tmp_path, tiny_clip, clip_backbone,
                                                                           monkeypatch):
    """Other weights with the same size and mtime (`cp -p`, `rsync -t`, `tar`) are other weights; a
    touched file, a copy elsewhere and a relative path to it are the same weights."""
    import os
    import shutil

    from safetensors.torch import save_file

    state = {k: v.clone() for k, v in clip_backbone.model.state_dict().items() if v.is_floating_point()}
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    save_file({k: v + 0.01 for k, v in state.items()}, first)
    save_file({k: v + 0.02 for k, v in state.items()}, second)
    assert first.stat().st_size == second.stat().st_size
    weights = tmp_path / "weights.safetensors"
    shutil.copy2(first, weights)
    before = load_backbone("clip", str(tiny_clip), str(weights)).fingerprint()
    stat = weights.stat()
    shutil.copyfile(second, weights)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # other bytes, same path, size and mtime
    after = load_backbone("clip", str(tiny_clip), str(weights)).fingerprint()
    assert after != before
    os.utime(weights)  # touched: same bytes, same weights
    assert load_backbone("clip", str(tiny_clip), str(weights)).fingerprint() == after
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(weights, moved / weights.name)  # a copy elsewhere (new mtime): the same weights
    assert load_backbone("clip", str(tiny_clip), str(moved / weights.name)).fingerprint() == after
    monkeypatch.chdir(moved)  # given as a relative path (vip train) or an absolute one (vip predict)
    assert load_backbone("clip", str(tiny_clip), weights.name).fingerprint() == after


def test_a_weights_digest_is_read_once_per_version_of_the_file(tmp_path, monkeypatch):
    """The sha256 of a weights file is remembered in the cache folder, across processes, and read
    again after any write to the file, even one that keeps its size and mtime."""
    import os

    from vipcli import digests
    from vipcli.cache_admin import clear

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"a" * 1000)
    first = digests.remembered_digest(weights)
    assert first == file_digest(weights)
    digests._MEMO.clear()  # a new process: only the cache folder remembers
    reads = []
    monkeypatch.setattr(digests, "file_digest", lambda path: reads.append(path) or "0" * 64)
    assert digests.remembered_digest(weights) == first and reads == []
    stat = weights.stat()
    weights.write_bytes(b"b" * 1000)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert digests.remembered_digest(weights) == "0" * 64 and reads == [weights]
    root = Path(os.environ["VIP_CACHE_DIR"])
    assert len(list((root / "digests").iterdir())) == 2
    assert clear(root)["kept"] == [] and not (root / "digests").exists()


@pytest.mark.parametrize("damage", ["flipped digit", "flipped seal", "no seal (an earlier vip's)", "truncated"])
def test_a_damaged_remembered_weights_digest_is_not_trusted(tmp_path, monkeypatch, damage):
    """A remembered digest with one hex digit changed still looked like a sha256 and was trusted: the
    backbone got a wrong fingerprint (another cache key, a wrong digest recorded in the run). Records
    now carry a checksum of their own; a damaged one, or one without it, is read again and rewritten."""
    import os

    from vipcli import digests

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"a" * 1000)
    truth = digests.remembered_digest(weights)
    [record] = (Path(os.environ["VIP_CACHE_DIR"]) / "digests").iterdir()
    digest, seal = record.read_text().split()
    flip = {"0": "1"}.get(digest[10], "0")
    record.write_text({"flipped digit": f"{digest[:10]}{flip}{digest[11:]} {seal}\n",
                       "flipped seal": f"{digest} {seal[:-1]}{'0' if seal[-1] != '0' else '1'}\n",
                       "no seal (an earlier vip's)": f"{digest}\n",
                       "truncated": f"{digest} {seal[:7]}"}[damage])
    digests._MEMO.clear()  # a new process: only the cache folder remembers
    reads = []
    real = digests.file_digest
    monkeypatch.setattr(digests, "file_digest", lambda path: reads.append(path) or real(path))
    assert digests.remembered_digest(weights) == truth and reads == [weights]
    assert record.read_text() == f"{digest} {seal}\n"  # rewritten whole: the next process trusts it
    digests._MEMO.clear()
    assert digests.remembered_digest(weights) == truth and reads == [weights]


def test_runs_and_benchmarks_of_earlier_versions_match_the_same_weights_file(tmp_path, tiny_clip, clip_backbone):
    """vip 0.2.0 before content digests recorded a weights file by path, size and mtime: the same file
    still matches (no "weights differ", a benchmark resumes); a touched or other file does not."""
    import os

    from safetensors.torch import save_file

    from vipcli.weights_identity import same_backbone

    weights = tmp_path / "w.safetensors"
    save_file({k: v + 0.01 for k, v in clip_backbone.model.state_dict().items() if v.is_floating_point()}, weights)
    backbone = load_backbone("clip", str(tiny_clip), str(weights))
    stat = weights.stat()
    legacy = dict(backbone.describe(), pretrained=str(weights), weights={
        "path": str(weights.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    assert same_backbone("0123456789abcdef", legacy, backbone.fingerprint(), backbone.describe())
    assert not same_backbone("0123456789abcdef", dict(legacy, arch="other"), backbone.fingerprint(),
                             backbone.describe())
    folder_form = dict(legacy, weights={"path": str(tmp_path), "files": [[weights.name, stat.st_size,
                                                                          stat.st_mtime_ns]]})
    current = dict(backbone.describe(), weights={"files": [backbone.describe()["weights"]]})
    assert same_backbone("0123456789abcdef", folder_form, "fedcba9876543210", current)
    relative = dict(legacy, pretrained="w.safetensors")  # an earlier run given the file as a relative path
    assert same_backbone("0123456789abcdef", relative, backbone.fingerprint(), backbone.describe())
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert not same_backbone("0123456789abcdef", legacy, backbone.fingerprint(), backbone.describe())


def test_a_touched_weights_file_of_an_earlier_run_or_sweep_is_not_said_to_differ(tmp_path, tiny_clip, clip_backbone):
    """A weights file an earlier vip recorded by path, size and mtime, touched or copied since, cannot
    be told apart from other weights: vip predict says it cannot tell (and how to give the file back its
    time) instead of "differs (weights: now {...}, trained with {...})", and a resumed sweep says the same
    instead of "made with other settings (backbone_fingerprint: stored X, now Y)"."""
    import os

    from safetensors.torch import save_file

    from vipcli.sweep_folder import check_matches
    from vipcli.errors import VipError
    from vipcli.predict import backbone_warning

    weights = tmp_path / "w.safetensors"
    save_file({k: v + 0.01 for k, v in clip_backbone.model.state_dict().items() if v.is_floating_point()}, weights)
    backbone = load_backbone("clip", str(tiny_clip), str(weights))
    stat = weights.stat()
    legacy = dict(backbone.describe(), pretrained=str(weights), weights={
        "path": str(weights), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    seconds, nanoseconds = divmod(stat.st_mtime_ns, 10**9)
    touch = f"touch -d @{seconds}.{nanoseconds:09d} {weights}"
    warning = backbone_warning("clip", "runs/old", backbone.describe(), legacy)
    assert warning.startswith("cannot tell whether backbone 'clip' has the weights runs/old was trained with: ")
    assert touch in warning and "differs" not in warning
    listed = dict(legacy, weights=[legacy["weights"]])  # the same record in a list of one: the same words
    assert backbone_warning("clip", "runs/old", backbone.describe(), listed) == warning
    other = dict(legacy, arch="other")  # another architecture is still said to differ
    assert backbone_warning("clip", "runs/old", backbone.describe(), other).startswith("backbone 'clip' differs")
    stored = {"config": {"backbone_fingerprint": "0123456789abcdef", "backbone_describe": legacy}}
    current = {"backbone_fingerprint": backbone.fingerprint(), "backbone_describe": backbone.describe()}
    with pytest.raises(VipError) as refused:
        check_matches(stored, current, tmp_path / "bench")
    assert "begun by an earlier vip" in refused.value.message and touch in refused.value.message
    assert "backbone_fingerprint" not in refused.value.message and "--force" in refused.value.hint
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the hint's touch: the sweep resumes
    check_matches(stored, current, tmp_path / "bench")


def test_run_options_store_absolute_paths_and_copy_small_configs(tmp_path, monkeypatch, tiny_clip):
    from vipcli.registry import copy_run_files, rebuild_backbone_options, run_backbone_options

    work = tmp_path / "work"
    (work / "configs").mkdir(parents=True)
    config = work / "configs" / "my-clip.json"
    config.write_text(tiny_clip.read_text())
    monkeypatch.chdir(work)
    options = run_backbone_options("clip", "configs/my-clip.json", "none")
    assert options.arch == str(config.resolve()) and options.pretrained == "none"
    assert options.files == {"backbone/arch/my-clip.json": config.resolve()}
    trained = load_backbone("clip", "configs/my-clip.json", "none", warn_random=False)

    run = tmp_path / "elsewhere" / "run"
    run.mkdir(parents=True)
    copy_run_files(options, run)
    config.unlink()  # the original is gone; the run still rebuilds its backbone, from anywhere
    monkeypatch.chdir(tmp_path)
    arch, pretrained = rebuild_backbone_options(run, options.arch, options.pretrained)
    assert arch == str((run / "backbone" / "arch" / "my-clip.json").resolve()) and pretrained == "none"
    rebuilt = load_backbone("clip", arch, pretrained, warn_random=False)
    assert rebuilt.fingerprint() == trained.fingerprint()


def test_run_options_keep_tags_and_hub_ids_and_absolutize_local_dirs(tmp_path, monkeypatch):
    from vipcli.registry import run_backbone_options

    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.safetensors").write_bytes(b"x" * 10)
    monkeypatch.chdir(tmp_path)
    assert run_backbone_options("clip", "ViT-B-16-quickgelu", "openai").arch == "ViT-B-16-quickgelu"
    assert run_backbone_options("hf-clip", None, "vinid/plip").pretrained == "vinid/plip"
    local = run_backbone_options("clip", "local-dir:weights", "weights/model.safetensors")
    assert local.arch == f"local-dir:{(tmp_path / 'weights').resolve()}"
    assert local.pretrained == str((tmp_path / "weights" / "model.safetensors").resolve())
    assert local.files == {}  # weights are never copied


def test_shipped_small_clip_config_loads_by_name():
    backbone = load_backbone("clip", "small-clip", "none", warn_random=False)
    assert backbone.embed_dim == 256 and backbone.describe()["arch"].startswith("small-clip.json#")


def test_loading_a_weights_file_skips_random_initialisation_and_loads_every_weight(tmp_path, tiny_clip,
                                                                                   clip_backbone, monkeypatch):
    from safetensors.torch import save_file

    state = _nudged(clip_backbone.model.state_dict(), seed=1)
    weights = tmp_path / "tiny-weights.safetensors"
    save_file(state, weights)
    calls = []
    real_init = torch.nn.init.kaiming_uniform_
    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", lambda *a, **k: calls.append(1) or real_init(*a, **k))
    loaded = load_backbone("clip", str(tiny_clip), str(weights))
    assert calls == []  # no random initialisation of layers the file then overwrites
    for name, tensor in loaded.model.state_dict().items():
        torch.testing.assert_close(tensor, state[name], rtol=0, atol=0)
    load_backbone("clip", str(tiny_clip), "none")
    assert calls  # random weights are still initialised (seeded)


def test_random_weights_are_drawn_on_the_cpu_whatever_the_device(tiny_clip, monkeypatch):
    """CUDA's generator gives other numbers than the CPU's for the same seed: towers drawn on a GPU were other
    weights under the same describe() (a run trained there predicted with other weights on the CPU). The meta
    device stands in for the GPU: the draws must happen on the CPU, the model then lands on the device."""
    from vip_backbones.openclip_base import create_open_clip

    drawn = []
    real_normal = torch.nn.init.normal_

    def normal_(*args, **kwargs):
        drawn.append((args[0] if args else kwargs["tensor"]).device.type)
        return real_normal(*args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "normal_", normal_)
    model, _ = create_open_clip(str(tiny_clip), None, torch.device("meta"))
    assert drawn and set(drawn) == {"cpu"}
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_offline_random_weights_of_a_hub_model_name_what_is_still_needed(monkeypatch, tmp_path):
    """`--pretrained none` with an hf-hub: model still reads its config and tokenizer; the fix offered is
    never the option already passed."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(VipError) as error:
        load_backbone("biomedclip", None, "none", warn_random=False)
    message = str(error.value)
    assert message.startswith("could not load the config of 'hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_"
                              "patch16_224': not in the local cache")
    assert "--pretrained none still reads the model's config and tokenizer" in message
    assert "or --pretrained none for random" not in message and "--arch" in message


def _nudged(state: dict, seed: int) -> dict:
    """Other weights than `state`'s that are still a working model: each weight moved by a little seeded noise.
    (Adding 0.5 to every weight saturated the tiny CLIP: on a CPU whose kernels round otherwise, a change of one
    token's embedding then moved its text feature by less than the contract check can see, and the load failed.)"""
    generator = torch.Generator().manual_seed(seed)
    return {k: v.contiguous() + 0.02 * torch.randn(v.shape, generator=generator, dtype=v.dtype) for k, v in state.items()}


def _local_dir_model(tmp_path, tiny_clip, seed: int) -> tuple:
    """An open_clip `local-dir:` folder (config and weights) whose weights are the seeded random ones, `_nudged`."""
    import json

    from safetensors.torch import save_file

    folder = tmp_path / "local-model"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": json.loads(tiny_clip.read_text())}))
    seeded = load_backbone("clip", str(tiny_clip), "none", warn_random=False).model.state_dict()
    own = _nudged(seeded, seed)
    save_file(own, folder / "open_clip_model.safetensors")
    return folder, seeded, own


def test_local_dir_model_loads_its_own_weights_none_or_a_file_as_asked(tmp_path, tiny_clip):
    """`--arch local-dir:X` alone: X's weights; `--pretrained none`: random; `--pretrained FILE`: the file
    (open_clip itself ignores `pretrained` for such a model). Each is a different model to the feature cache."""
    from safetensors.torch import save_file

    folder, seeded, own = _local_dir_model(tmp_path, tiny_clip, seed=1)
    other = _nudged(seeded, seed=2)
    save_file(other, tmp_path / "other.safetensors")
    key = "text_projection"
    loaded = {
        "own": load_backbone("clip", f"local-dir:{folder}"),
        "none": load_backbone("clip", f"local-dir:{folder}", "none", warn_random=False),
        "file": load_backbone("clip", f"local-dir:{folder}", str(tmp_path / "other.safetensors")),
    }
    assert torch.equal(loaded["own"].model.state_dict()[key], own[key])
    assert torch.equal(loaded["none"].model.state_dict()[key], seeded[key])
    assert torch.equal(loaded["file"].model.state_dict()[key], other[key])
    assert len({backbone.fingerprint() for backbone in loaded.values()}) == 3
    assert loaded["none"].describe()["pretrained"] == "none"
    checkpoint = folder / "open_clip_model.safetensors"
    assert loaded["own"].describe()["weights"] == [
        {"file": checkpoint.name, "size": checkpoint.stat().st_size, "sha256": file_digest(checkpoint)}]
    with pytest.raises(UsageError, match="no such file or folder"):
        load_backbone("clip", f"local-dir:{folder}", str(tmp_path / "missing.safetensors"))
    with pytest.raises(UsageError, match="not a weights file"):  # open_clip would have ignored it
        load_backbone("clip", f"local-dir:{folder}", "openai")


def test_a_missing_or_wrong_weights_file_is_said_as_such_in_a_short_line(tmp_path, tiny_clip):
    with pytest.raises(UsageError) as error:
        load_backbone("clip", str(tiny_clip), str(tmp_path / "nowhere.safetensors"))
    assert "no such file or folder" in str(error.value) and "local cache" not in str(error.value)
    with pytest.raises(UsageError, match="no such file or folder"):
        load_backbone("hf-clip", None, "./no-such-folder")
    from safetensors.torch import save_file

    save_file({f"prompt.{i}": torch.zeros(2) for i in range(200)}, tmp_path / "model.safetensors")  # not a CLIP
    with pytest.raises(VipError) as error:
        load_backbone("clip", str(tiny_clip), str(tmp_path / "model.safetensors"))
    message = str(error.value)
    assert message.startswith(f"could not load the weights file {tmp_path / 'model.safetensors'} into")
    assert "pass weights of this architecture" in message and len(message) < 700


class _RunsCode:
    """Unpickled, it would create the file `marker`: what a hostile checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_weights_file_holding_pickled_objects_is_refused_without_running_them(tmp_path, tiny_clip):
    """A .pt/.bin checkpoint holding Python objects (code that runs when unpickled) was refused by torch, and vip
    showed torch's message, cut: "could not load the weights file ... UnpicklingError: Weights only load failed.
    ... Re-running `torch.load` with `weights_only` set to `False` will likely succeed ... (pass weights of this
    architecture)", which pointed at the wrong cause and at the unsafe way out. It now says what the file holds."""
    import pickle

    from vip_backbones.hub import missing_weights_error

    marker = tmp_path / "code-ran"
    hostile = tmp_path / "checkpoint.pt"
    hostile.write_bytes(pickle.dumps({"state_dict": _RunsCode(marker)}))
    with pytest.raises(VipError) as error:
        load_backbone("clip", str(tiny_clip), str(hostile))
    assert not marker.exists()
    assert error.value.message == (f"the weights file {hostile} holds pickled Python objects besides tensors; vip "
                                   "loads tensors only (unpickling them could run any code)")
    assert error.value.hint.startswith("pass a .safetensors file of these weights") and "weights_only" not in str(error.value)
    refused = pickle.UnpicklingError("Weights only load failed. ... weights_only=False will likely succeed")
    wrapped = OSError("Unable to load weights from pytorch checkpoint file")
    wrapped.__cause__ = refused  # as transformers raises it for a model folder's pytorch_model.bin
    assert missing_weights_error("./model-folder", "CLIPModel", None, wrapped, "hint").message.startswith(
        "the weights file ./model-folder holds pickled Python objects")


def test_a_hub_checkpoint_is_identified_by_its_blob_not_its_path(tmp_path):
    """The same hub file in two users' caches (or after a re-download) is the same weights."""
    from vip_backbones.openclip_base import _checkpoint_identity

    identities = []
    for user in ("alice", "bob"):
        blobs = tmp_path / user / "models--org--model" / "blobs"
        snapshot = tmp_path / user / "models--org--model" / "snapshots" / "abc123"
        blobs.mkdir(parents=True)
        snapshot.mkdir(parents=True)
        (blobs / "9f86d081884c7d65").write_bytes(b"weights")
        (snapshot / "open_clip_model.safetensors").symlink_to(blobs / "9f86d081884c7d65")
        identities.append(_checkpoint_identity(snapshot / "open_clip_model.safetensors"))
    assert identities[0] == identities[1] == {"file": "open_clip_model.safetensors", "blob": "9f86d081884c7d65"}
    plain = tmp_path / "local.safetensors"
    plain.write_bytes(b"w")
    assert _checkpoint_identity(plain) == {"file": plain.name, "size": 1, "sha256": file_digest(plain)}


def test_offline_weights_of_a_hub_model_name_offer_a_fix_that_works_offline(monkeypatch, tmp_path):
    """An hf-hub: architecture reads its config from the hub whatever --pretrained is, so the hint for its
    missing weights is a local --arch, never `--pretrained none` alone (which fails offline the same way)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(VipError) as error:
        load_backbone("biomedclip", None, None)
    message = str(error.value)
    assert message.startswith("could not load weights 'hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_"
                              "patch16_224': not in the local cache")
    assert "or --pretrained none for random" not in message
    assert "pass --arch with a local open_clip model-config JSON and --pretrained" in message
    assert message.endswith("must also name local folders in its hf_model_name and hf_tokenizer_name)")


def test_an_open_clip_model_with_a_timm_image_tower_loads(tmp_path):
    """open_clip's ConvNeXt-style configs build the image tower with timm, which has no `output_dim`: `clip` took the
    joint size from it and failed at load; it now reads it from the text side, and the towers agree on it."""
    config = {
        "embed_dim": 32,
        "vision_cfg": {"timm_model_name": "convnext_atto", "timm_model_pretrained": False, "timm_pool": "avg",
                       "timm_proj": "linear", "image_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    path = tmp_path / "tiny-convnext-clip.json"
    path.write_text(json.dumps(config))
    backbone = load_backbone("clip", str(path), "none", warn_random=False)  # the contract checks run too
    assert backbone.embed_dim == 32
    assert backbone.encode_image(torch.zeros(2, 3, 32, 32)).shape == (2, 32)
    assert backbone.encode_text(backbone.tokenize(["an irregular border"])).shape == (1, 32)
