"""ViP (MICCAI 2024): a learned context prompt and a learned merge prompt over visual symptoms.

The two ablations of the paper live here too: the context prompt alone (symptom features averaged)
and the merge prompt alone (over fixed, hand-written symptom prompts). See docs/METHOD.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from vipcli.methods.base import NoSettings
from vipcli.methods.prompting import ContextSettings, PromptMethod, symptom_prompts


@dataclass
class VipSettings(ContextSettings):
    """ViP's settings: the context prompt's length and sharing."""


class Vip(PromptMethod):
    """ViP: context prompt (CoP) + merge prompt (MeP) over each class's symptoms."""

    summary = "ViP: context prompt + merge prompt over symptoms"
    needs_symptoms = True
    learns_context = True
    learned_merge = True
    prompts_are_symptoms = True
    Settings = VipSettings

    def make_prompts(self, setup):
        """Per class, its symptoms."""
        return symptom_prompts(setup, self.id or "vip")


class VipCopOnly(Vip):
    """ViP ablation: the context prompt only; a class scores the mean cosine over its symptoms (the mean of
    their unit-length features)."""

    summary = "ViP ablation: context prompt, mean over symptoms"
    learned_merge = False


class VipMepOnly(Vip):
    """ViP ablation: the merge prompt only, over fixed symptom prompts."""

    summary = "ViP ablation: merge prompt over fixed symptom prompts"
    learns_context = False
    Settings = NoSettings
