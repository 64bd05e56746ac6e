"""Zero-shot over symptoms: a class scores the mean cosine of the image to its symptom prompts."""

from __future__ import annotations

from vipcli.methods.base import NoSettings
from vipcli.methods.prompting import PromptMethod, symptom_prompts


class SymptomZeroShot(PromptMethod):
    """Zero-shot with symptoms: logit_c = scale * mean_j cos(f, t_cj); nothing is learned."""

    summary = "zero-shot: mean similarity to the symptoms"
    trains = False
    uses_shots = False
    Settings = NoSettings
    needs_symptoms = True
    prompts_are_symptoms = True

    def make_prompts(self, setup):
        """Per class, its symptoms."""
        return symptom_prompts(setup, self.id or "symptom-zeroshot")
