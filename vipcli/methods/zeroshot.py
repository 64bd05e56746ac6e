"""Zero-shot CLIP: each class is the hand prompt 'a photo of a {class}.'; nothing is learned."""

from __future__ import annotations

from vipcli.methods.base import NoSettings
from vipcli.methods.prompting import ZERO_SHOT_TEMPLATE, PromptMethod, readable_class_name


class ZeroShot(PromptMethod):
    """Zero-shot: cosine to 'a photo of a {class}.' times the backbone's logit scale."""

    summary = "zero-shot: 'a photo of a {class}.'"
    uses_symptoms = False  # its prompts are the class names alone
    trains = False
    uses_shots = False
    Settings = NoSettings

    def make_prompts(self, setup):
        """One templated prompt per class."""
        return [[ZERO_SHOT_TEMPLATE.format(readable_class_name(name))] for name in setup.class_names]
