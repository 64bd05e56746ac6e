"""What a transformers model of another type than a backbone takes is, said in one line with where it would go.

`hf-clip` takes a `CLIPModel`, `siglip` a `SiglipModel`. A folder (or hub id) of anything else is refused
from its `config.json` alone, before the tokenizer is looked for or any weight loads, naming what it holds:
the other of the two families (use the other backbone), one tower of either (vip needs both), another
two-tower image-text model (no backbone for it: a plugin can add one), an image encoder alone (a ViT, a
DINOv2: no text tower for the prompts), a text encoder alone (a BERT: the text tower of an open_clip model
through `--backbone biomedclip`), or any other model.
"""

from __future__ import annotations

from vipcli.errors import UsageError

BACKBONE_OF = {"clip": ("hf-clip", "CLIPModel"), "siglip": ("siglip", "SiglipModel")}  # the model types vip takes
TWO_TOWERS = ("vip needs a two-tower image-text model: a CLIPModel (--backbone hf-clip), a SiglipModel (--backbone "
              "siglip) or an open_clip model (--backbone clip)")
PLUGIN_HINT = ("a backbone plugin can add it: subclass vip_backbones.hf_base.TransformersBackbone (README, "
               "Writing a backbone plugin)")
BERT_HINT = ("a BERT-style encoder can be the text tower of one: --backbone biomedclip --arch a model-config JSON "
             "whose text_cfg.hf_model_name is this folder (README, Backbones)")


def _mapping(name: str) -> dict:
    """transformers' model-type -> class-name table `name` (modeling_auto), or {} where this transformers lacks it."""
    try:
        from transformers.models.auto import modeling_auto
    except Exception:  # noqa: BLE001 - a transformers that cannot import: the generic line below
        return {}
    return dict(getattr(modeling_auto, name, {}) or {})


def _holds(source: str, model_type: str, architectures) -> str:
    """`SOURCE holds a 'vit' model (ViTModel)`: the model type and, where the config names it, its class."""
    named = next(iter(architectures or []), None) or _mapping("MODEL_MAPPING_NAMES").get(model_type)
    return f"{source} holds a '{model_type}' model" + (f" ({named})" if named else "")


def _one_tower(source: str, model_type: str, accepted: tuple[str, ...]) -> UsageError | None:
    """For one tower of a family vip takes ('clip_vision_model', 'siglip_text_model'): vip needs the whole model."""
    family, _, tower = model_type.partition("_")
    if family not in BACKBONE_OF or tower not in ("vision_model", "text_model"):
        return None
    backbone, model_class = BACKBONE_OF[family]
    where = "" if family in accepted else f" to --backbone {backbone}"
    return UsageError(f"{source} holds only the {tower.replace('_model', '')} tower of a {model_class} ('{model_type}'): "
                      "vip needs both towers and their projections",
                      f"pass the folder of the whole {model_class}{where} ({model_class}.save_pretrained writes both "
                      "towers)")


def other_model_error(source: str, model_type: str, architectures, accepted: tuple[str, ...]) -> UsageError | None:
    """The UsageError for a model of type `model_type` given to a backbone that takes `accepted` types; None for one of them.

    Args:
        source: the folder, config.json or hub id, as the user gave it.
        model_type: the config's `model_type`.
        architectures: the config's `architectures` (class names), if any.
        accepted: the backbone's `model_types`.
    """
    if model_type in accepted:
        return None
    one_tower = _one_tower(source, model_type, accepted)
    if one_tower is not None:
        return one_tower
    holds = _holds(source, model_type, architectures)
    if model_type in BACKBONE_OF:
        backbone = BACKBONE_OF[model_type][0]
        return UsageError(f"{holds}, which --backbone {backbone} takes", f"use --backbone {backbone}")
    if model_type in _mapping("MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES"):
        return UsageError(f"{holds}, an image-text model vip has no backbone for (it takes CLIPModel with "
                          "--backbone hf-clip and SiglipModel with --backbone siglip)", PLUGIN_HINT)
    if model_type.endswith("_vision_model") or model_type in _mapping("MODEL_FOR_IMAGE_MAPPING_NAMES"):
        return UsageError(f"{holds}: an image encoder alone, without the text tower vip's prompts need",
                          TWO_TOWERS)
    if model_type.endswith("_text_model") or model_type in _mapping("MODEL_FOR_MASKED_LM_MAPPING_NAMES"):
        bert = model_type in _mapping("MODEL_FOR_MASKED_LM_MAPPING_NAMES")
        return UsageError(f"{holds}: a text encoder alone, without the image tower vip needs",
                          TWO_TOWERS + (f"; {BERT_HINT}" if bert else ""))
    return UsageError(f"{holds}, not a two-tower image-text model", TWO_TOWERS)
