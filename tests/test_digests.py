"""The short text digest (`vipcli.digests.text_digest`): feature cache keys, sweep folders, `--out` files and
backbone identities hold its values, so it must give what each of them computed with hashlib before it."""

from __future__ import annotations

import hashlib
import json

import pytest

from vipcli.digests import text_digest


def _by_hand(text: str) -> str:
    """What each caller wrote out before: 16 hex digits of the sha256 of the text's UTF-8 bytes."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize("text", ["", "a", "vip", "Läsion µm ✓ 病变", json.dumps({"b": [1, 2], "a": None}),
                                  "melanoma\nnevus\0", "x" * 10_000])
def test_a_text_digest_is_the_first_16_hex_digits_of_the_sha256_of_its_utf8_bytes(text):
    assert text_digest(text) == _by_hand(text)
    assert len(text_digest(text)) == 16 and set(text_digest(text)) <= set("0123456789abcdef")


def test_the_digests_that_key_caches_and_sweeps_are_what_they_were():
    """The decoding digest (in every feature cache key, sweep and --out file), DICOM's decoder identity and a
    backbone's fingerprint, each computed as it was before they shared `text_digest`."""
    from vipcli.dicom import decoder_identity
    from vipcli.features import decoding_digest, decoding_rules
    from vipcli.registry import load_backbone

    assert decoding_digest([]) == _by_hand(json.dumps(decoding_rules(), sort_keys=True))
    assert decoder_identity().startswith("dicom-") and len(decoder_identity()) == len("dicom-") + 16
    toy = load_backbone("toy", None, "none", warn_random=False)
    assert toy.fingerprint() == _by_hand(json.dumps(toy.describe(), sort_keys=True, default=str))


def test_a_string_that_is_not_utf8_is_refused_not_digested_otherwise():
    """A lone surrogate (a path of undecodable bytes) raises, as `str.encode()` did in each caller."""
    with pytest.raises(UnicodeEncodeError):
        text_digest("bad\udcff")
