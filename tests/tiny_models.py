"""Tiny, randomly initialised towers built from config files (no network, no weights)."""

from __future__ import annotations

import json
from pathlib import Path

TINY_WORDS = (
    "the spot is asymmetric symmetric on both sides has blurry or jagged edges multiple colors like brown "
    "black blue red white small dark areas within clear well defined a consistent color usually tan "
    "redness swelling around presence of pleural effusion cavitation consolidation air bronchogram sign "
    "normal shape and size sharp lung borders markings absence focal opacities photo melanoma nevus "
    "pneumonia x . , class alpha beta gamma round square blob"
).split()


def write_tiny_clip_config(folder: Path) -> Path:
    """An open_clip model-config JSON for a 1-layer CLIP (32-px images, width 32)."""
    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    path = folder / "tiny-clip.json"
    path.write_text(json.dumps(config))
    return path


def write_tiny_bert(folder: Path) -> Path:
    """A tiny BERT config + WordPiece vocabulary folder (covers TINY_WORDS, so no [UNK])."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(TINY_WORDS)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    bert = {
        "model_type": "bert", "architectures": ["BertModel"], "vocab_size": len(vocab), "hidden_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 64, "type_vocab_size": 2, "pad_token_id": 0,
    }
    (folder / "config.json").write_text(json.dumps(bert))
    tokenizer = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 64}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    return folder


def write_tiny_biomedclip_config(folder: Path) -> Path:
    """An open_clip model-config JSON whose text tower is the tiny BERT (BiomedCLIP's layout)."""
    bert = write_tiny_bert(folder / "tiny-bert")
    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {
            "hf_model_name": str(bert), "hf_tokenizer_name": str(bert), "hf_proj_type": "mlp",
            "hf_pooler_type": "cls_last_hidden_state_pooler", "context_length": 64, "hf_model_pretrained": False,
        },
    }
    path = folder / "tiny-biomedclip.json"
    path.write_text(json.dumps(config))
    return path
