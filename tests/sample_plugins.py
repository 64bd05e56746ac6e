"""Small backbone plugins for the contract tests: one sound, the others with one deliberate flaw each.

Installed into a temporary site folder as the distribution `sample-plugins` (see plugin_helpers.py),
exactly as a third-party plugin is. The base pads with its end token, as Hugging Face CLIP
tokenizers do, and pools at the first end token under a causal mask.
"""

from __future__ import annotations

import math
import random
import zlib
from pathlib import Path

import torch
from torch import nn

from vipcli.backbone import Backbone, CausalTextTower, clip_style_transform

START, END = 1, 2
PAD = END  # the pad id equals the end id


class PadIsEndBackbone(CausalTextTower, Backbone):
    """Sound: pads with its end token and declares `end_token_id`."""

    end_token_id = END
    pad_token_id = PAD

    def __init__(self, arch=None, pretrained=None, device=None):
        self.device = torch.device(device or "cpu")
        self.embed_dim, self.token_width, self.context_length, self.vocab_size = 16, 16, 24, 512
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.words = nn.Embedding(self.vocab_size, self.token_width)
            self.positions = nn.Embedding(self.context_length, self.token_width)
            layer = nn.TransformerEncoderLayer(self.token_width, 2, 32, batch_first=True, dropout=0.0)
            self.text = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
            self.text_proj = nn.Linear(self.token_width, self.embed_dim, bias=False)
            self.image = nn.Sequential(nn.Conv2d(3, 8, 8, stride=8), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                       nn.Linear(8, self.embed_dim))
        self.tower = nn.ModuleList([self.words, self.positions, self.text, self.text_proj, self.image]).to(self.device)
        self.logit_scale = torch.tensor(math.log(100.0))

    def modules(self):
        return [self.tower]

    def tokenize(self, texts):
        ids = torch.full((len(texts), self.context_length), PAD, dtype=torch.long)
        for row, text in enumerate(texts):
            words = text.lower().replace(".", " .").replace(",", " ,").split()[: self.context_length - 2]
            tokens = [START, *(3 + zlib.crc32(w.encode()) % (self.vocab_size - 3) for w in words), END]
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return ids  # [N, L]

    def embed_tokens(self, ids):
        return self.words(ids.to(self.device))  # [N, L, W]

    def pool(self, hidden, ids):
        """The user's own pooling: the first END in each row (argmax picks 0 when there is none)."""
        end = (ids == END).int().argmax(dim=1)  # [N]
        return hidden[torch.arange(len(ids), device=hidden.device), end]  # [N, W]

    def encode_text_embeds(self, embeds, ids):
        ids = ids.to(self.device)
        length = ids.shape[1]
        x = embeds + self.positions.weight[:length]  # [N, L, W]
        x = self.text(x, mask=self.causal_mask(length))  # [N, L, W]
        return self.text_proj(self.pool(x, ids))  # [N, D]

    def encode_image(self, images):
        return self.image(images.to(self.device))  # [B, D]

    def image_transform(self, train):
        return clip_style_transform(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), train)

    def describe(self):
        return {"arch": "pad-is-end", "pretrained": "none", "weights": "seed 0"}


class ForgetsSeed(PadIsEndBackbone):
    """Flaw: --pretrained SEED chooses its image weights, but describe() does not say which."""

    def __init__(self, arch=None, pretrained=None, device=None):
        super().__init__(arch, pretrained, device)
        with torch.no_grad():
            self.image[-1].bias.add_(float(pretrained or 0))


class PositionsInPlace(PadIsEndBackbone):
    """Flaw: adds the positions into the `embeds` it is given, in place."""

    def encode_text_embeds(self, embeds, ids):
        embeds += self.positions.weight[:ids.shape[1]]
        x = self.text(embeds, mask=self.causal_mask(ids.shape[1]))  # [N, L, W]
        return self.text_proj(self.pool(x, ids.to(self.device)))  # [N, D]


class IgnoresDevice(PadIsEndBackbone):
    """Flaw: builds its towers on the CPU, and says so, whatever device it is given."""

    def __init__(self, arch=None, pretrained=None, device=None):
        super().__init__(arch, pretrained, "cpu")


class LeavesTowersBehind(PadIsEndBackbone):
    """Flaw: says it is on the device it is given but leaves its towers on the CPU."""

    def __init__(self, arch=None, pretrained=None, device=None):
        super().__init__(arch, pretrained, "cpu")
        self.device = torch.device(device or "cpu")


class Unseeded(PadIsEndBackbone):
    """Flaw: re-initialises its image head from the global random state, so every load has other weights."""

    def __init__(self, arch=None, pretrained=None, device=None):
        super().__init__(arch, pretrained, device)
        self.image[-1].reset_parameters()


class PadIsEndUndeclared(PadIsEndBackbone):
    """Flaw: pads with its end token but does not say which token is the end token."""

    end_token_id = None


class HalfFeatures(PadIsEndBackbone):
    """Flaw: float16 image features."""

    def encode_image(self, images):
        return super().encode_image(images).half()


class PathInDescribe(PadIsEndBackbone):
    """Flaw: describe() holds a Path, which is not JSON."""

    def describe(self):
        return {**super().describe(), "weights": Path("/weights/model.bin")}


class DescribeNotAMethod(PadIsEndBackbone):
    """Flaw: describe is not a method (set to None, as a half-finished plugin may leave it)."""

    describe = None


class VectorScale(PadIsEndBackbone):
    """Flaw: logit_scale of shape [1] (as SigLIP's parameter), not 0-d."""

    def __init__(self, arch=None, pretrained=None, device=None):
        super().__init__(arch, pretrained, device)
        self.logit_scale = self.logit_scale.reshape(1)


class BrokenInit(PadIsEndBackbone):
    """Flaw: its constructor raises."""

    def __init__(self, arch=None, pretrained=None, device=None):
        config = {}
        self.width = config["width"]


class FlakyImages(PadIsEndBackbone):
    """Flaw that only shows later: encode_image fails on batches of more than 2 images."""

    def encode_image(self, images):
        if images.shape[0] > 2:
            raise RuntimeError(f"cannot encode a batch of {images.shape[0]} images")
        return super().encode_image(images)


class NewIdentityEachLoad(PadIsEndBackbone):
    """Flaw: describe() changes from one load to the next (a random run id)."""

    def __init__(self, arch=None, pretrained=None, device=None):
        super().__init__(arch, pretrained, device)
        self.run_id = random.Random().randrange(10**9)

    def describe(self):
        return {**super().describe(), "run": self.run_id}


class PrefixMixUp(PadIsEndBackbone):
    """Flaw: its `encode_text_parts` gives every prompt the first group's shared prefix."""

    def encode_text_parts(self, parts, ids):
        prefixes = parts.prefixes[:1].expand(len(parts.group), -1, -1)  # [N, K, W]: group 0's, whatever the group
        return self.encode_text_embeds(torch.cat([prefixes, parts.rest], dim=1), ids)


class PrefixGradientHalved(PadIsEndBackbone):
    """Flaw: its `encode_text_parts` gives the right features but half the gradient to the shared prefixes."""

    def encode_text_parts(self, parts, ids):
        prefixes = parts.prefixes.detach() + 0.5 * (parts.prefixes - parts.prefixes.detach())  # same values
        return self.encode_text_embeds(torch.cat([prefixes[parts.group], parts.rest], dim=1), ids)


class PoolAtStart(PadIsEndBackbone):
    """Flaw: reads the text feature at position 0 (the start token every prompt shares), not at its end token."""

    def pool(self, hidden, ids):
        return hidden[:, 0]  # [N, W]: the same for every prompt under a causal mask


class SameImages(PadIsEndBackbone):
    """Flaw: encode_image ignores the pixels it is given."""

    def encode_image(self, images):
        return super().encode_image(torch.zeros_like(images))


class NoModules(PadIsEndBackbone):
    """Flaw: modules() returns nothing, so freeze() reaches no weight."""

    def modules(self):
        return []


class NoDeviceArgument(PadIsEndBackbone):
    """Flaw: its __init__ does not take device=."""

    def __init__(self, arch=None, pretrained=None):
        super().__init__(arch, pretrained)


class IgnoresEmbeds(PadIsEndBackbone):
    """Flaw: rebuilds the tower's input from the ids, so learned context in `embeds` is ignored."""

    def encode_text_embeds(self, embeds, ids):
        return super().encode_text_embeds(self.embed_tokens(ids), ids)


class DetachesEmbeds(PadIsEndBackbone):
    """Flaw: detaches the embeddings it is given: right features, but learned context never trains."""

    def encode_text_embeds(self, embeds, ids):
        return super().encode_text_embeds(embeds.detach(), ids)


class NoisyImages(PadIsEndBackbone):
    """Flaw: functional dropout in encode_image (F.dropout defaults to training=True): random in eval."""

    def encode_image(self, images):
        return torch.nn.functional.dropout(super().encode_image(images), 0.2)


class BatchStatsImages(PadIsEndBackbone):
    """Flaw: image features centred on the batch's mean (batch statistics): an image's feature depends on
    the other images of its batch, so on the batch size and on what the cache already held."""

    def encode_image(self, images):
        features = super().encode_image(images)
        return features - features.mean(dim=0, keepdim=True) + 0.1 * features


class StatefulImages(PadIsEndBackbone):
    """Flaw: image features centred on a running mean of the batches seen before, with a memo of the last call
    (so the same batch twice in a row gets the same features): a feature depends on what was encoded earlier."""

    def __init__(self, arch=None, pretrained=None, device=None):
        super().__init__(arch, pretrained, device)
        self.running, self.last = None, None

    def encode_image(self, images):
        if self.last is not None and torch.equal(self.last[0], images):
            return self.last[1]
        features = super().encode_image(images)
        centred = features - (0 if self.running is None else 0.5 * self.running)
        mean = features.mean(dim=0, keepdim=True)
        self.running = mean if self.running is None else 0.5 * self.running + 0.5 * mean
        self.last = (images.clone(), centred)
        return centred


class HugeImageFeatures(PadIsEndBackbone):
    """Flaw: image features scaled by 1e30: finite, but their norm overflows float32."""

    def encode_image(self, images):
        return super().encode_image(images) * 1e30


class NoisyText(PadIsEndBackbone):
    """Flaw: torch.rand in the text tower's forward."""

    def encode_text_embeds(self, embeds, ids):
        features = super().encode_text_embeds(embeds, ids)
        return features + 0.01 * torch.rand_like(features)


class LosesWords(PadIsEndBackbone):
    """Flaw: its tokenizer maps every word to one unknown id (a vocabulary that failed to load)."""

    def tokenize(self, texts):
        ids = super().tokenize(texts)
        return torch.where(ids > END, torch.full_like(ids, 3), ids)


class DomainVocabulary(PadIsEndBackbone):
    """Sound: a word-level vocabulary of another domain (chest X-rays) without 'melanoma' or 'nevus',
    which both become its unknown id; it tells every other word apart."""

    def tokenize(self, texts):
        unknown = {3 + zlib.crc32(w.encode()) % (self.vocab_size - 3) for w in ("melanoma", "nevus")}
        ids = super().tokenize(texts)
        return torch.where(torch.isin(ids, torch.tensor(sorted(unknown))), torch.full_like(ids, 3), ids)


class ReadsLengthOnly(PadIsEndBackbone):
    """Flaw: its text feature depends on the prompt's length and first token only, not on its words."""

    def encode_text_embeds(self, embeds, ids):
        ids = ids.to(self.device)
        end = (ids == END).int().argmax(dim=1)  # [N]
        return self.text_proj(embeds[:, 0] + self.positions.weight[end])  # [N, D]


class BracketsInError(PadIsEndBackbone):
    """Flaw: encode_image raises an error whose text holds square brackets (an install hint)."""

    def encode_image(self, images):
        if images.shape[0] > 1:
            raise ImportError("encode_image needs onnxruntime: pip install 'sample-plugins[onnx]'")
        return super().encode_image(images)


class FirstRowOnly(PadIsEndBackbone):
    """Flaw: returns the first image's feature for any batch: the load-time checks (one image) cannot tell."""

    def encode_image(self, images):
        return super().encode_image(images)[:1]


class SqueezesImages(PadIsEndBackbone):
    """Flaw: squeezes the features, so a batch of one image gets [D], not [1, D]: the probe batch of two cannot tell."""

    def encode_image(self, images):
        return super().encode_image(images).squeeze()


class NormalisesImagesInPlace(PadIsEndBackbone):
    """Sound: rescales the batch it is handed in place (vip hands every call a batch of its own)."""

    def encode_image(self, images):
        return super().encode_image(images.mul_(0.5).add_(0.25))


class TextFeaturesElsewhere(PadIsEndBackbone):
    """Flaw: text features moved off the towers' device (here to `meta`, standing in for the CPU of a GPU run)."""

    def encode_text_embeds(self, embeds, ids):
        return super().encode_text_embeds(embeds, ids).to("meta")


ENTRY_POINTS = "\n".join([
    "first-row-only = vip_sample_plugins:FirstRowOnly",
    "squeezes-images = vip_sample_plugins:SqueezesImages",
    "normalises-images-in-place = vip_sample_plugins:NormalisesImagesInPlace",
    "text-features-elsewhere = vip_sample_plugins:TextFeaturesElsewhere",
    "forgets-seed = vip_sample_plugins:ForgetsSeed",
    "positions-in-place = vip_sample_plugins:PositionsInPlace",
    "ignores-device = vip_sample_plugins:IgnoresDevice",
    "leaves-towers-behind = vip_sample_plugins:LeavesTowersBehind",
    "unseeded = vip_sample_plugins:Unseeded",
    "pad-is-end = vip_sample_plugins:PadIsEndBackbone",
    "stateful-images = vip_sample_plugins:StatefulImages",
    "pad-is-end-undeclared = vip_sample_plugins:PadIsEndUndeclared",
    "half-features = vip_sample_plugins:HalfFeatures",
    "path-in-describe = vip_sample_plugins:PathInDescribe",
    "describe-none = vip_sample_plugins:DescribeNotAMethod",
    "vector-scale = vip_sample_plugins:VectorScale",
    "broken-init = vip_sample_plugins:BrokenInit",
    "flaky-images = vip_sample_plugins:FlakyImages",
    "new-identity = vip_sample_plugins:NewIdentityEachLoad",
    "prefix-mix-up = vip_sample_plugins:PrefixMixUp",
    "prefix-gradient-halved = vip_sample_plugins:PrefixGradientHalved",
    "pool-at-start = vip_sample_plugins:PoolAtStart",
    "same-images = vip_sample_plugins:SameImages",
    "no-modules = vip_sample_plugins:NoModules",
    "no-device-argument = vip_sample_plugins:NoDeviceArgument",
    "ignores-embeds = vip_sample_plugins:IgnoresEmbeds",
    "detaches-embeds = vip_sample_plugins:DetachesEmbeds",
    "noisy-images = vip_sample_plugins:NoisyImages",
    "noisy-text = vip_sample_plugins:NoisyText",
    "batch-stats-images = vip_sample_plugins:BatchStatsImages",
    "huge-image-features = vip_sample_plugins:HugeImageFeatures",
    "loses-words = vip_sample_plugins:LosesWords",
    "reads-length-only = vip_sample_plugins:ReadsLengthOnly",
    "domain-vocabulary = vip_sample_plugins:DomainVocabulary",
    "brackets-in-error = vip_sample_plugins:BracketsInError",
])
