"""CoOp (Zhou et al., IJCV 2022): learned context vectors followed by the class name."""

from __future__ import annotations

from dataclasses import dataclass

from vipcli.methods.prompting import ContextSettings, PromptMethod, readable_class_name


@dataclass
class CoopSettings(ContextSettings):
    """CoOp's settings: the context's length and sharing."""


class Coop(PromptMethod):
    """CoOp: `[ctx_1..ctx_M] <class name>.`, the context learned with cross-entropy."""

    summary = "CoOp: learned context + class name"
    uses_symptoms = False  # its prompts are the class names alone
    learns_context = True
    Settings = CoopSettings

    def make_prompts(self, setup):
        """One prompt per class: its readable name."""
        return [[readable_class_name(name)] for name in setup.class_names]
