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


def _bpe_vocab_and_merges(words) -> tuple[dict, list]:
    """A byte-level BPE vocabulary (every byte, alone and word-final) plus merges that build each word."""
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    symbols = [*alphabet, *(c + "</w>" for c in alphabet)]
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(words):
        pieces = [*word[:-1], word[-1] + "</w>"]
        merged = pieces[0]
        for piece in pieces[1:]:
            pair = (merged, piece)
            merged += piece
            if pair not in merges:
                merges.append(pair)
                symbols.append(merged)
    vocab = {symbol: i for i, symbol in enumerate(dict.fromkeys(symbols))}
    return vocab, merges


def _save_seeded(model_class, config, tokenizer, folder: Path, seed: int) -> Path:
    """Build `model_class(config)` with random weights drawn from `seed`; save it and `tokenizer` to `folder`."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_tiny_hf_clip(folder: Path, seed: int = 0) -> Path:
    """A `save_pretrained` folder of a tiny random transformers CLIPModel with a real CLIPTokenizer
    (byte-level BPE, start/end tokens, pads with the end token as every HF CLIP tokenizer does)."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    words = [w for w in TINY_WORDS if w.isalpha()]
    vocab, merges = _bpe_vocab_and_merges(words)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)  # the largest id, as in OpenAI's vocabulary
    # written as vocab.json + merges.txt and read back: the one constructor transformers 4 and 5 share
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    tokenizer.model_max_length = 77
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": bos,
                     "eos_token_id": eos, "pad_token_id": eos},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 16},
        projection_dim=24,
    )
    return _save_seeded(CLIPModel, config, tokenizer, folder, seed)


def write_tiny_siglip(folder: Path, seed: int = 0) -> Path:
    """A `save_pretrained` folder of a tiny random transformers SiglipModel laid out like MedSigLIP:
    a tokenizer that appends </s> (id 1) and pads with <pad> (id 0) to 64 tokens, no start token,
    and a preprocessor config with mean = std = 0.5."""
    import json as _json

    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in TINY_WORDS:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                                        unk_token="<unk>", model_max_length=64)
    config = SiglipConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 64, "pad_token_id": 0, "bos_token_id": None,
                     "eos_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 16},
    )
    _save_seeded(SiglipModel, config, tokenizer, folder, seed)
    preprocessor = {"image_processor_type": "SiglipImageProcessor", "image_mean": [0.5, 0.5, 0.5],
                    "image_std": [0.5, 0.5, 0.5], "size": {"height": 32, "width": 32}, "do_resize": True,
                    "do_normalize": True, "do_rescale": True, "rescale_factor": 1 / 255}
    (folder / "preprocessor_config.json").write_text(_json.dumps(preprocessor))
    return folder
