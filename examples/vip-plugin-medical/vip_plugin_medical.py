"""Published medical CLIP models as vip backbones: each one is its family's base with new defaults.

`pip install ./examples/vip-plugin-medical`, then `vip train --backbone quiltnet ...` or
`--backbone plip`. `--arch` and `--pretrained` still work as for the base (`clip`, `hf-clip`).
"""

from vip_backbones.clip import ClipBackbone
from vip_backbones.hf_clip import HFClipBackbone


class QuiltNetBackbone(ClipBackbone):
    """QuiltNet-B-32 (histopathology; open_clip, CLIP text transformer), weights from the hub."""

    default_arch = "hf-hub:wisdomik/QuiltNet-B-32"


class PlipBackbone(HFClipBackbone):
    """PLIP (pathology; a transformers CLIPModel with its own tokenizer), weights from the hub."""

    default_pretrained = "vinid/plip"
