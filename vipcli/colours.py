"""Colour science for the methods' colours: sRGB <-> linear light, CIE XYZ and CIELAB (D65), the colour
differences CIE76 (ΔE*ab) and CIEDE2000 (ΔE00), and what a reader with dichromacy sees (Machado, Oliveira and
Fernandes 2009). plots.py's palette is chosen, and its tests measure it, with these; nothing here draws.

A colour is a hex string ("#D55E00") or three sRGB floats in [0, 1]."""

from __future__ import annotations

import itertools
import math

# sRGB's primaries to CIE XYZ, D65 white (IEC 61966-2-1)
SRGB_TO_XYZ = ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505))
D65_WHITE = (0.95047, 1.0, 1.08883)  # XYZ of sRGB's white

# Machado, Oliveira and Fernandes (2009), severity 1.0: a dichromat's view, on linear sRGB (each a 3 x 3 matrix)
DICHROMACY = {
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216), (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881)),
    "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602), (0.004733, 0.691367, 0.303900)),
}
VISIONS = (None, *DICHROMACY)  # normal colour vision, then each dichromacy


def srgb(colour) -> tuple[float, float, float]:
    """`colour` (a hex string "#RRGGBB", or three floats) as three sRGB floats in [0, 1]."""
    if isinstance(colour, str):
        digits = colour.lstrip("#")
        return tuple(int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4))
    return tuple(float(c) for c in colour[:3])


def to_linear(value: float) -> float:
    """One sRGB channel (0 to 1, as stored) as linear light (0 to 1): the sRGB transfer curve undone."""
    return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4


def from_linear(value: float) -> float:
    """One channel of linear light (0 to 1) as sRGB stores it (0 to 1): the inverse of `to_linear`."""
    return 12.92 * value if value <= 0.0031308 else 1.055 * value ** (1 / 2.4) - 0.055


def hex_colour(rgb) -> str:
    """Three sRGB floats (clipped to [0, 1]) as "#RRGGBB"."""
    return "#" + "".join(f"{round(255 * min(1.0, max(0.0, c))):02X}" for c in rgb)


def xyz(colour) -> tuple[float, float, float]:
    """CIE XYZ (Y = 1 for white) of an sRGB colour."""
    linear = [to_linear(c) for c in srgb(colour)]
    return tuple(sum(w * c for w, c in zip(row, linear)) for row in SRGB_TO_XYZ)


def lab(colour) -> tuple[float, float, float]:
    """CIELAB (L*, a*, b*; D65) of an sRGB colour: L* 0 (black) to 100 (white)."""

    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    fx, fy, fz = (f(value / white) for value, white in zip(xyz(colour), D65_WHITE))
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def as_seen_with(colour, vision: str | None) -> tuple[float, float, float]:
    """`colour` (sRGB floats) as a reader with `vision` (a key of DICHROMACY; None: normal vision) sees it: the
    Machado matrix applied to linear light, clipped to the sRGB gamut."""
    rgb = srgb(colour)
    if vision is None:
        return rgb
    linear = [to_linear(c) for c in rgb]
    seen = (sum(m * c for m, c in zip(row, linear)) for row in DICHROMACY[vision])
    return tuple(from_linear(min(1.0, max(0.0, c))) for c in seen)


def delta_e76(first: tuple, second: tuple) -> float:
    """CIE76 colour difference (ΔE*ab) of two CIELAB colours: their straight-line distance."""
    return math.dist(first, second)


def ciede2000(first: tuple, second: tuple) -> float:
    """CIEDE2000 colour difference (ΔE00) of two CIELAB colours (Sharma, Wu and Dalal 2005); about 1 is the least
    difference the eye notices side by side, and unlike CIE76 it does not overstate differences among saturated
    blues."""
    (l1, a1, b1), (l2, a2, b2) = first, second
    chroma = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(chroma ** 7 / (chroma ** 7 + 25 ** 7)))
    a1, a2 = (1 + g) * a1, (1 + g) * a2
    c1, c2 = math.hypot(a1, b1), math.hypot(a2, b2)
    h1, h2 = (math.degrees(math.atan2(b, a)) % 360 for a, b in ((a1, b1), (a2, b2)))
    dh = 0.0 if c1 * c2 == 0 else (h2 - h1 + 180) % 360 - 180
    dl, dc, dhue = l2 - l1, c2 - c1, 2 * math.sqrt(c1 * c2) * math.sin(math.radians(dh / 2))
    mean_l, mean_c = (l1 + l2) / 2, (c1 + c2) / 2
    mean_h = h1 + h2 if c1 * c2 == 0 else ((h1 + h2) / 2 if abs(h1 - h2) <= 180 else (h1 + h2 + 360) / 2 % 360)
    t = (1 - 0.17 * math.cos(math.radians(mean_h - 30)) + 0.24 * math.cos(math.radians(2 * mean_h))
         + 0.32 * math.cos(math.radians(3 * mean_h + 6)) - 0.20 * math.cos(math.radians(4 * mean_h - 63)))
    rotation = -math.sin(math.radians(60 * math.exp(-((mean_h - 275) / 25) ** 2))) * 2 * math.sqrt(
        mean_c ** 7 / (mean_c ** 7 + 25 ** 7))
    sl = 1 + 0.015 * (mean_l - 50) ** 2 / math.sqrt(20 + (mean_l - 50) ** 2)
    sc, sh = 1 + 0.045 * mean_c, 1 + 0.015 * mean_c * t
    return math.sqrt((dl / sl) ** 2 + (dc / sc) ** 2 + (dhue / sh) ** 2 + rotation * (dc / sc) * (dhue / sh))


def colour_difference(first, second, vision: str | None = None) -> float:
    """CIEDE2000 difference of two sRGB colours as a reader with `vision` (None: normal vision) sees them."""
    return ciede2000(lab(as_seen_with(first, vision)), lab(as_seen_with(second, vision)))


def closest_pair(colours: dict, vision: str | None = None) -> tuple[float, str, str]:
    """(ΔE00, name, name) of the two of `colours` ({name: colour}) that look most alike to a reader with `vision`."""
    return min((colour_difference(colours[a], colours[b], vision), a, b) for a, b in itertools.combinations(colours, 2))
