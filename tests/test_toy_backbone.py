"""The shipped toy backbone and the lesion world it was pretrained on.

(a) the toy backbone keeps the plugin contract; (b) the lesion world is seeded; (c) the shipped
weights carry visual-symptom knowledge: class names mean nothing to them, the paper's symptoms do.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vipcli import lesion_world
from vipcli.backbone import Backbone
from vipcli.errors import UsageError, VipError
from vipcli.packs import shipped_packs
from vipcli.registry import load_backbone

PROMPTS = ["a photo of a nevus.", "The spot has blurry, or jagged edges", "x x x x small, dark areas within the spot."]
DISEASE_WORDS = {"melanoma", "nevus", "naevus", "nevi", "mole", "cancer", "malignant", "benign", "carcinoma", "tumor"}


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    return load_backbone("toy")


@pytest.fixture(scope="module")
def paper_packs():
    packs = {pack.name: list(pack.symptoms) for pack in shipped_packs()}
    return [packs[name] for name in lesion_world.CLASS_NAMES]  # [melanoma symptoms, nevus symptoms]


# (a) plugin contract -----------------------------------------------------------------------


def test_toy_loads_through_the_registry_frozen(toy):
    assert isinstance(toy, Backbone) and toy.id == "toy"
    parameters = [p for module in toy.modules() for p in module.parameters()]
    assert parameters and not any(p.requires_grad for p in parameters)
    assert all(not module.training for module in toy.modules())
    assert toy.describe()["weights_sha256"] == hashlib.sha256(toy_weights_bytes()).hexdigest()


def toy_weights_bytes() -> bytes:
    from vip_backbones.toy import shipped_weights_path

    return shipped_weights_path().read_bytes()


def test_tokenizer_special_ids_and_unknown_words(toy):
    ids = toy.tokenize(["Zebra quantum spot!"])  # [1, L]
    vocab = toy.vocab
    assert ids.shape == (1, toy.context_length) and toy.pad_token_id == vocab.index("[PAD]") == 0
    assert ids[0, 0] == vocab.index("[SOT]") and vocab.index("[EOT]") == len(vocab) - 1
    unk = vocab.index("[UNK]")
    assert ids[0, 1:6].tolist() == [unk, unk, vocab.index("spot"), unk, vocab.index("[EOT]")]


def test_paper_symptoms_and_class_names_are_in_the_vocabulary(toy, paper_packs):
    unk = toy.vocab.index("[UNK]")
    texts = [s for pack in paper_packs for s in pack] + [f"a photo of a {name}." for name in lesion_world.CLASS_NAMES]
    assert not (toy.tokenize(texts) == unk).any()


def test_text_path_from_embeddings_equals_the_model_forward(toy):
    ids = toy.tokenize(PROMPTS)  # [N, L]
    with torch.no_grad():
        own = toy.model.encode_text(ids)  # [N, D]
        ours = toy.encode_text_embeds(toy.embed_tokens(ids), ids)
    assert ours.shape == (len(PROMPTS), toy.embed_dim)
    torch.testing.assert_close(ours, own, rtol=0, atol=0)


def test_trimming_padding_gives_the_same_features(toy):
    ids = toy.tokenize(PROMPTS)
    length = int(toy.sequence_lengths(ids).max())
    assert length < toy.context_length
    with torch.no_grad():
        embeds = toy.embed_tokens(ids)  # [N, L, W]
        full = toy.encode_text_embeds(embeds, ids)
        trimmed = toy.encode_text_embeds(embeds[:, :length], ids[:, :length])
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-5)


def test_spliced_context_changes_the_pooled_feature(toy):
    ids = toy.tokenize(["x x x x the spot is symmetric on both sides."])
    with torch.no_grad():
        embeds = toy.embed_tokens(ids)  # [1, L, W]
        plain = toy.encode_text_embeds(embeds, ids)
        start = toy.num_prefix_tokens
        embeds[:, start : start + 4] = torch.randn(4, toy.token_width) * 0.02
        spliced = toy.encode_text_embeds(embeds, ids)
    assert spliced.shape == plain.shape and not torch.allclose(spliced, plain)


def test_image_side_shapes(toy):
    attrs = lesion_world.sample_attributes(None, np.random.default_rng(0))
    image = lesion_world.render_lesion(attrs, 64, np.random.default_rng(1))
    test_view, train_view = toy.image_transform(False)(image), toy.image_transform(True)(image)
    assert test_view.shape == train_view.shape == (3, 64, 64)
    with torch.no_grad():
        assert toy.encode_image(torch.stack([test_view, train_view])).shape == (2, toy.embed_dim)


def test_random_init_is_deterministic_and_bad_options_are_usage_errors():
    first, second = load_backbone("toy", pretrained="none"), load_backbone("toy", pretrained="none")
    for a, b in zip(first.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    assert first.describe()["pretrained"] == "none" and first.fingerprint() != load_backbone("toy").fingerprint()
    with pytest.raises(UsageError, match="no-such.safetensors"):
        load_backbone("toy", pretrained="no-such.safetensors")
    with pytest.raises(UsageError, match="ViT-B-16"):
        load_backbone("toy", arch="ViT-B-16")


# (b) lesion world --------------------------------------------------------------------------


def read_tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_write_dataset_is_byte_identical_for_a_seed(tmp_path):
    counts = lesion_world.write_dataset(tmp_path / "a", n_per_class=10, seed=3)
    lesion_world.write_dataset(tmp_path / "b", n_per_class=10, seed=3)
    lesion_world.write_dataset(tmp_path / "c", n_per_class=10, seed=4)
    a, b, c = read_tree(tmp_path / "a"), read_tree(tmp_path / "b"), read_tree(tmp_path / "c")
    assert counts == {split: {"melanoma": n, "nevus": n} for split, n in (("train", 5), ("val", 2), ("test", 3))}
    assert len(a) == 20 and {name.split("/")[1] for name in a} == {"melanoma", "nevus"}
    assert a == b and a.keys() == c.keys() and a != c


def test_write_dataset_refuses_a_folder_it_would_mix_with(tmp_path):
    """A second lesion world written into the same folder would silently mix with the first."""
    lesion_world.write_dataset(tmp_path / "lesions", n_per_class=10, seed=0)
    before = read_tree(tmp_path / "lesions")
    with pytest.raises(VipError) as error:
        lesion_world.write_dataset(tmp_path / "lesions", {"train": 2, "val": 2, "test": 2}, seed=0)
    assert str(tmp_path / "lesions" / "train") in str(error.value) and "new folder" in str(error.value)
    assert read_tree(tmp_path / "lesions") == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.yaml").write_text("a file beside the splits is kept\n")
    lesion_world.write_dataset(tmp_path / "other", n_per_class=10, seed=0)
    assert read_tree(tmp_path / "other") == before and (tmp_path / "other" / "notes.yaml").is_file()


def test_demo_dataset_replaces_its_own_earlier_one(tmp_path):
    """`vip demo` run again with fewer images leaves none of the earlier run's behind."""
    from vipcli.demo import DemoConfig, make_dataset

    make_dataset(DemoConfig(out=tmp_path, train_per_class=4, val_per_class=2, test_per_class=6))
    data = make_dataset(DemoConfig(out=tmp_path, train_per_class=4, val_per_class=2, test_per_class=3))
    assert len(list((data / "test").rglob("*.png"))) == 6 and len(list((data / "train").rglob("*.png"))) == 8


def test_captions_describe_attributes_and_never_name_a_disease():
    rng = np.random.default_rng(0)
    for _ in range(300):
        attrs = lesion_world.sample_attributes(str(rng.choice(lesion_world.CLASS_NAMES)), rng)
        words = set(lesion_world.caption(attrs, rng).replace(",", " ").replace(".", " ").split())
        assert not words & DISEASE_WORDS
    same = [lesion_world.caption(attrs, np.random.default_rng(7)) for _ in range(2)]
    assert same[0] == same[1]


# (c) symptom knowledge of the shipped weights ----------------------------------------------


def zero_shot_accuracy(toy, features: torch.Tensor, labels: torch.Tensor, class_texts: list[list[str]]) -> float:
    """argmax over classes of the mean cosine to the class's texts (docs/METHOD.md section 4)."""
    scores = []
    for texts in class_texts:
        with torch.no_grad():
            text_features = F.normalize(toy.encode_text(toy.tokenize(texts)), dim=-1)  # [k, D]
        scores.append((features @ text_features.T).mean(dim=1))  # [N]
    return (torch.stack(scores, dim=1).argmax(dim=1) == labels).float().mean().item()


@pytest.fixture(scope="module")
def task_features(toy):
    images, labels, _ = lesion_world.render_task(n_per_class=100, seed=2024)  # 200 images, 5% label noise
    transform = toy.image_transform(False)
    with torch.no_grad():
        features = toy.encode_image(torch.stack([transform(image) for image in images]))  # [N, D]
    return F.normalize(features, dim=-1), torch.tensor(labels)


def test_symptoms_carry_knowledge_that_class_names_do_not(toy, task_features, paper_packs):
    features, labels = task_features
    names = zero_shot_accuracy(toy, features, labels, [[f"a photo of a {c}."] for c in lesion_world.CLASS_NAMES])
    symptoms = zero_shot_accuracy(toy, features, labels, paper_packs)
    swapped = zero_shot_accuracy(toy, features, labels, paper_packs[::-1])
    # Measured with the shipped weights on these 200 images: class names 0.440, symptoms 0.725,
    # swapped 0.275 (on five other 200-image seeds: names 0.475-0.550, symptoms 0.680-0.760).
    # The margins leave about twice the seed-to-seed spread as slack.
    assert abs(names - 0.5) <= 0.15, f"class-name zero-shot {names:.3f} should be near chance"
    assert symptoms >= 0.62, f"symptom zero-shot {symptoms:.3f} should be clearly above chance"
    assert symptoms - names >= 0.12, f"symptoms {symptoms:.3f} should beat class names {names:.3f}"
    assert swapped <= 0.40, f"swapped packs {swapped:.3f} should fall below chance"
