"""Views travel from the decoding workers as 8-bit pixels and reach the encoder as the same floats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vipcli.backbone import clip_style_transform
from vipcli.pixels import ViewPipeline, view_pipeline

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def _picture(seed: int = 0, size=(96, 64)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.mark.parametrize("train", [False, True])
def test_split_pipeline_gives_the_transforms_own_floats_bit_for_bit(train):
    transform = clip_style_transform(32, MEAN, STD, train)
    pipeline = view_pipeline(transform)
    assert pipeline.normalize is not None  # the usual Compose is split
    pictures = [_picture(seed) for seed in range(4)]
    made, expected = [], []
    for seed, picture in enumerate(pictures):
        torch.manual_seed(seed)  # the same random crop and flip for both
        expected.append(transform(picture))
        torch.manual_seed(seed)
        made.append(pipeline.make(picture))
    assert all(view.dtype == torch.uint8 and view.shape == (3, 32, 32) for view in made)
    import pickle

    assert pickle.loads(pickle.dumps(pipeline.make))(_picture()).dtype == torch.uint8  # spawned workers get it
    got = pipeline.finish(torch.stack(made), torch.device("cpu"))
    assert got.dtype == torch.float32
    assert torch.equal(got, torch.stack(expected))


def test_batches_of_several_images_views_finish_into_one_reused_buffer_bit_for_bit():
    pipeline = view_pipeline(clip_style_transform(32, MEAN, STD, True))
    generator = torch.Generator().manual_seed(0)
    keep, buffers = {}, []
    for counts in ([3, 1, 4], [2], [5, 5]):  # smaller than the buffer, then larger: it grows
        chunks = [torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator) for n in counts]
        expected = pipeline.finish(torch.cat(chunks), torch.device("cpu"))
        got = pipeline.finish_many(chunks, torch.device("cpu"), keep)
        assert got.shape == expected.shape and torch.equal(got, expected)
        buffers.append(keep["pixels"].data_ptr())
    assert buffers[0] == buffers[1] != buffers[2]  # reused while it fits


def test_other_transforms_run_whole_in_the_workers():
    from torchvision import transforms as T

    def custom(image):
        return T.functional.to_tensor(image) * 2 - 1

    for transform in (custom, T.Compose([T.Resize(16), T.ToTensor()]),
                      T.Compose([T.ToTensor(), T.Normalize(MEAN, STD), T.Lambda(lambda x: x.flip(0))])):
        pipeline = view_pipeline(transform)
        assert pipeline.normalize is None
        view = pipeline.make(_picture())
        assert view.dtype == torch.float32
        assert torch.equal(pipeline.finish(view[None], torch.device("cpu")), transform(_picture())[None])


def test_encoded_features_do_not_change_with_the_split(monkeypatch, tmp_path):
    """Features through uint8 views equal those through the whole float transform (the cache stays valid)."""
    from vipcli import features
    from vipcli.registry import load_backbone

    backbone = load_backbone("toy")
    assert features._pipelines(backbone)[1].normalize is not None  # the toy's views do travel as uint8
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        _picture(i, (80, 60)).save(paths[-1])
    split = features.encode_images(backbone, paths, views=2, cache=None, workers=0)
    in_pairs = features.encode_images(backbone, paths, views=2, cache=None, workers=0, batch_size=2)  # buffer reused
    monkeypatch.setattr(features, "view_pipeline", ViewPipeline)  # every transform kept whole
    whole = features.encode_images(backbone, paths, views=2, cache=None, workers=0)
    for i in range(3):
        assert torch.equal(split.eval[i], whole.eval[i]) and torch.equal(split.train[i], whole.train[i])
        assert torch.allclose(in_pairs.train[i], whole.train[i], atol=1e-5)  # other batch sizes: rounding only
    reference = features.iterate_fresh_features(backbone, paths, [0, 1, 0], False, 3, 0, seed=1)
    monkeypatch.undo()
    split_reference = features.iterate_fresh_features(backbone, paths, [0, 1, 0], False, 3, 0, seed=1)
    assert torch.equal(next(iter(reference))[0], next(iter(split_reference))[0])


@pytest.mark.parametrize("eval_std", [None, (0.5, 0.5, 0.5)], ids=["eval not split", "other statistics"])
def test_views_of_one_image_travel_alike_or_both_whole(eval_std):
    """Evaluation and training views of an image are stacked: split both the same way, or neither."""
    from torchvision import transforms as T

    from vipcli import features

    class Backbone:
        def image_transform(self, train):
            if train:
                return clip_style_transform(32, MEAN, STD, True)
            if eval_std is None:
                return T.Compose([T.Resize(32), T.CenterCrop(32), T.ToTensor()])
            return clip_style_transform(32, MEAN, eval_std, False)

    evaluation, training = features._pipelines(Backbone())
    assert evaluation.normalize is None and training.normalize is None
    assert training.make(_picture()).dtype == evaluation.make(_picture()).dtype == torch.float32
