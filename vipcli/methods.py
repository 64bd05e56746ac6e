"""ViP, its ablations and the baselines, as declarative specs over one prompt-learning core."""

from __future__ import annotations

from dataclasses import dataclass

from vipcli.errors import UsageError


@dataclass(frozen=True)
class MethodSpec:
    """How one method turns classes into logits."""

    name: str  # the value of --method
    prompts: str  # "symptoms" (one prompt per symptom) or "classname" (one per class); "" for linear
    learns_context: bool  # CoP: learned context vectors spliced into every prompt
    learned_merge: bool  # MeP: learned attention over a class's prompts (else mean of cosines)
    linear: bool  # a logistic-regression probe on image features instead of prompts
    summary: str  # one line for help texts and tables

    @property
    def trainable(self) -> bool:
        return self.learns_context or self.learned_merge or self.linear


METHODS = {
    spec.name: spec
    for spec in (
        MethodSpec("vip", "symptoms", True, True, False, "ViP: context prompt + merge prompt over symptoms"),
        MethodSpec("vip-cop-only", "symptoms", True, False, False, "ViP ablation: context prompt, mean over symptoms"),
        MethodSpec("vip-mep-only", "symptoms", False, True, False, "ViP ablation: merge prompt over fixed symptom prompts"),
        MethodSpec("coop", "classname", True, False, False, "CoOp: learned context + class name"),
        MethodSpec("zeroshot", "classname", False, False, False, "zero-shot: 'a photo of a {class}.'"),
        MethodSpec("symptom-zeroshot", "symptoms", False, False, False, "zero-shot: mean similarity to the symptoms"),
        MethodSpec("linear-probe", "", False, False, True, "logistic regression on frozen image features"),
    )
}

ZERO_SHOT_TEMPLATE = "a photo of a {}."


def get_method(name: str) -> MethodSpec:
    """The spec for `name`; an unknown name lists the valid ones."""
    spec = METHODS.get(name)
    if spec is None:
        raise UsageError(f"unknown method '{name}'", f"valid methods: {', '.join(METHODS)}")
    return spec


def class_prompts(spec: MethodSpec, class_names: list[str], symptoms: dict[str, list[str]]) -> list[list[str]]:
    """Per class, the phrases this method encodes (symptoms, or the class name)."""
    if spec.prompts == "symptoms":
        return [list(symptoms[name]) for name in class_names]
    readable = [name.replace("_", " ").replace("-", " ").lower() for name in class_names]
    if spec.learns_context:
        return [[name] for name in readable]
    return [[ZERO_SHOT_TEMPLATE.format(name)] for name in readable]


def build_classifier(spec: MethodSpec, backbone, class_names, symptoms, n_ctx: int = 4, class_specific=False, trim=True):
    """A fresh (untrained) classifier for `spec` on `backbone`.

    Args:
        symptoms: class name -> list of symptom phrases (used by symptom methods).
        n_ctx: context length M for methods that learn context.
        class_specific: one context per class instead of one shared by all.
        trim: run the text tower only up to the longest prompt.
    """
    from vipcli.heads import LinearProbe, PromptClassifier
    from vipcli.prompts import build_prompt_bank

    if spec.linear:
        return LinearProbe(len(class_names), backbone.embed_dim).to(backbone.device)
    m = n_ctx if spec.learns_context else 0
    bank = build_prompt_bank(backbone, class_prompts(spec, class_names, symptoms), m, trim=trim)
    classifier = PromptClassifier(backbone, bank, m, class_specific, spec.learned_merge)
    return classifier.to(backbone.device)
