"""A complete, minimal vip backbone plugin: small random towers, a word-hashing tokenizer.

Install it beside vip (`pip install ./examples/vip-plugin-example`) and it shows up in
`vip backbones list` as `tiny-example`; `vip train --backbone tiny-example ...` then works.
A real plugin would load pretrained towers in `__init__` instead.
"""

import math
import zlib

import torch
from torch import nn

from vipcli.backbone import Backbone, CausalTextTower, clip_style_transform

PAD, START, END = 0, 1, 2


class TinyExampleBackbone(CausalTextTower, Backbone):
    """Random towers, seeded so that every load gives the same weights.

    CausalTextTower gives `causal_mask` and `pool_at_end`; declaring `end_token_id` tells vip which
    token the feature is read from, so trimming keeps it whatever the pad id.
    """

    pad_token_id = PAD
    end_token_id = END

    def __init__(self, arch=None, pretrained=None, device=None):
        self.device = torch.device(device or "cpu")
        self.embed_dim, self.token_width, self.context_length = 32, 32, 32
        self.vocab_size, self.image_size = 1024, 32
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.words = nn.Embedding(self.vocab_size, self.token_width)
            self.positions = nn.Embedding(self.context_length, self.token_width)
            layer = nn.TransformerEncoderLayer(self.token_width, 2, 64, batch_first=True, dropout=0.0)
            self.text = nn.TransformerEncoder(layer, 1)
            self.text_proj = nn.Linear(self.token_width, self.embed_dim, bias=False)
            self.image = nn.Sequential(nn.Conv2d(3, 32, 8, stride=8), nn.GELU(), nn.AdaptiveAvgPool2d(1),
                                       nn.Flatten(), nn.Linear(32, self.embed_dim))
        # every weight in one module: modules() returns it, the inherited freeze() freezes all of it
        self.tower = nn.ModuleList([self.words, self.positions, self.text, self.text_proj, self.image]).to(self.device)
        self.logit_scale = torch.tensor(math.log(100.0))

    def modules(self):
        return [self.tower]

    def tokenize(self, texts):
        ids = torch.full((len(texts), self.context_length), PAD, dtype=torch.long)
        for row, text in enumerate(texts):
            words = text.lower().replace(".", " .").split()[: self.context_length - 2]
            tokens = [START, *(3 + zlib.crc32(w.encode()) % (self.vocab_size - 3) for w in words), END]
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return ids  # [N, L]

    def embed_tokens(self, ids):
        return self.words(ids.to(self.device))  # [N, L, W]

    def encode_text_embeds(self, embeds, ids):
        length = ids.shape[1]
        x = self.text(embeds + self.positions.weight[:length], mask=self.causal_mask(length))  # [N, L, W]
        return self.text_proj(self.pool_at_end(x, ids))  # [N, D], read at each end token

    def encode_image(self, images):
        return self.image(images.to(self.device))  # [B, D]

    def image_transform(self, train):
        return clip_style_transform(self.image_size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), train)

    def describe(self):
        return {"arch": "tiny-example", "pretrained": "none", "weights": "seed 0"}
