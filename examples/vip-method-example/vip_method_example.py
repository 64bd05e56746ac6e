"""A complete, minimal vip method plugin: the nearest class centroid of the few-shot features.

Install it beside vip (`pip install ./examples/vip-method-example`) and it shows up in
`vip methods list` as `centroid`; `vip train --method centroid`, `vip predict` and
`vip benchmark --methods centroid,vip` then work with it like with a built-in method.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vipcli.methods import Method


@dataclass
class CentroidSettings:
    """Set with `--method-option temperature=0.05`."""

    temperature: float = 0.01  # logits = cos(f, centroid) / temperature


class NearestCentroid(Method):
    """logit_c(x) = cos(f(x), mean of class c's normalised few-shot features) / temperature."""

    summary = "nearest class centroid of the few-shot image features"
    trains = False  # nothing is optimised ...
    uses_shots = True  # ... but the labelled images are used
    Settings = CentroidSettings

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        self.register_buffer("centroids", torch.zeros(setup.num_classes, setup.backbone.embed_dim))  # [C, D]
        self.to(setup.device)

    def fit(self, data, context):
        """Average every augmented view of each class's training images."""
        views = F.normalize(data.train.views.float(), dim=-1).mean(dim=1)  # [N, D]
        one_hot = F.one_hot(data.train.y, self.setup.num_classes).float()  # [N, C]
        centroids = one_hot.T @ views / one_hot.sum(0).clamp(min=1)[:, None]  # [C, D]
        self.centroids = F.normalize(centroids, dim=-1).to(self.setup.device)
        return super().fit(data, context)

    def forward(self, image_features):
        """[B, D] -> [B, C]."""
        cosine = F.normalize(image_features.float(), dim=-1) @ self.centroids.T  # [B, C]
        return cosine / self.settings.temperature
