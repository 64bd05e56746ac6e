"""Linear probe: L2-regularised logistic regression on normalised frozen image features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vipcli.methods.base import Method

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # inverse regularisation strengths tried on validation


class LinearProbe(Method):
    """Logistic regression (L-BFGS, scikit-learn) on the center view; C chosen on validation accuracy."""

    summary = "logistic regression on frozen image features"
    uses_symptoms = False  # no prompt at all: the image features alone
    needs_center_view = True

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        self.linear = nn.Linear(setup.backbone.embed_dim, setup.num_classes)  # weight [C, D], bias [C]
        self.chosen_c = (stored or {}).get("C")
        self.to(setup.device)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """[B, D] -> [B, C]."""
        return self.linear(F.normalize(image_features, dim=-1))

    def fit(self, data, context) -> dict:
        """Fit one model per C on train, keep the best on validation accuracy."""
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        x = F.normalize(data.train.x, dim=-1).numpy()
        xv = F.normalize(data.val.x, dim=-1).numpy()
        best = None
        for c in C_GRID:
            model = LogisticRegression(C=c, max_iter=2000, random_state=context.seed).fit(x, data.train.y.numpy())
            score = float((model.predict(xv) == data.val.y.numpy()).mean()) if len(xv) else 0.0
            if best is None or score > best[0]:
                best = (score, c, model)
        score, c, model = best
        weight, bias = np.asarray(model.coef_), np.asarray(model.intercept_)
        if weight.shape[0] == 1:  # binary: two logits whose softmax equals sklearn's sigmoid
            weight, bias = np.concatenate([-weight / 2, weight / 2]), np.concatenate([-bias / 2, bias / 2])
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.linear.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        self.chosen_c = c
        return {"best_epoch": None, "best_val_accuracy": round(100 * score, 2), "C": c, "history": []}

    def record(self) -> dict:
        """The regularisation strength chosen on validation."""
        return {"C": self.chosen_c}
