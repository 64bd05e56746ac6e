"""Notices at the top of a report: a run or benchmark whose backbone had random weights."""

from __future__ import annotations

from vipcli.report import html

RANDOM_WEIGHTS = "none"  # --pretrained none (vipcli.registry.RANDOM_WEIGHTS)


def _is_random(value) -> bool:
    return isinstance(value, str) and value.strip().lower() == RANDOM_WEIGHTS


def _random_identity(described: dict) -> bool:
    """The backbone's own description names random weights ('random:<digest>', 'random (seed 0)')."""
    return any(isinstance(described.get(key), str) and described[key].startswith("random")
               for key in ("weights_sha256", "weights"))


def _stored_backbone_config(record: dict) -> dict:
    """A 0.1.0 run's `config.backbone` ({} where the record has none)."""
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    return config.get("backbone") if isinstance(config.get("backbone"), dict) else {}


def random_weights(record: dict) -> bool:
    """Whether a run's metadata or a benchmark's stored config says the backbone had random weights.

    Reads what every vip since 0.1.0 stored: the `--pretrained` value (`pretrained_option`, or a
    benchmark config's `pretrained`), the backbone's description (`pretrained`, and its weights'
    identity), and a 0.1.0 run's `config.backbone.pretrained`. A record that says nothing about the
    weights (an unknown format) counts as not random.
    """
    described = record.get("backbone_describe") if isinstance(record.get("backbone_describe"), dict) else {}
    stated = (record.get("pretrained_option"), record.get("pretrained"), described.get("pretrained"),
              _stored_backbone_config(record).get("pretrained"))
    return any(_is_random(value) for value in stated) or _random_identity(described)


def random_weights_banner(record: dict, what: str = "these results") -> str:
    """A banner for the top of a report whose backbone had random weights ('' otherwise).

    Args:
        record: a run's metadata or a benchmark's stored config (see `random_weights`).
        what: what the banner warns about, e.g. 'this run's results'.
    """
    if not random_weights(record):
        return ""
    # the option as given: a run's `pretrained_option` ('' when left out; its `pretrained` is what the load said),
    # else a benchmark's stored config's `pretrained` or a 0.1.0 run's header
    option = record["pretrained_option"] if "pretrained_option" in record else record.get("pretrained")
    asked = _is_random(option) or _is_random(_stored_backbone_config(record).get("pretrained"))
    why = "--pretrained none" if asked else "the backbone's default"  # a plugin random unless given weights
    return (f'<div class="banner" role="alert"><b>Random weights ({why}).</b> The backbone was '
            f"not pretrained, so {html.text(what)} mean nothing except as a timing or plumbing test: do not "
            f"read the accuracies, probabilities, prediction sets or symptoms as what any method achieves.</div>")
