"""The colour science the methods' palette is chosen and checked with (vipcli.colours), against published
reference values, so that the palette's tests measure what they say."""

from __future__ import annotations

import pytest

from vipcli.colours import (DICHROMACY, as_seen_with, ciede2000, closest_pair, colour_difference, delta_e76,
                            from_linear, hex_colour, lab, srgb, to_linear, xyz)


def test_the_srgb_transfer_curve_and_its_inverse():
    """IEC 61966-2-1: mid-grey 0.5 is 0.2140 in linear light; the linear toe below 0.04045."""
    assert to_linear(0.5) == pytest.approx(0.21404, abs=1e-5)
    assert to_linear(0.02) == pytest.approx(0.02 / 12.92)
    assert all(from_linear(to_linear(v / 255)) == pytest.approx(v / 255, abs=1e-9) for v in range(256))
    assert srgb("#FF8000") == (1.0, 128 / 255, 0.0) and hex_colour(srgb("#D55E00")) == "#D55E00"


def test_cie_xyz_and_cielab_of_reference_colours():
    """sRGB's white is D65 (Y = 1) and L* 100 without colour; pure sRGB red is L* 53.24, a* 80.09, b* 67.20."""
    assert xyz("#FFFFFF") == pytest.approx((0.95047, 1.0, 1.08883), abs=2e-4)
    assert lab("#FFFFFF") == pytest.approx((100.0, 0.0, 0.0), abs=0.02)  # the 4-digit matrix: b* -0.01
    assert lab("#000000") == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)
    assert lab("#FF0000") == pytest.approx((53.24, 80.09, 67.20), abs=0.05)
    assert lab("#0000FF") == pytest.approx((32.30, 79.19, -107.86), abs=0.05)


def test_ciede2000_gives_the_published_test_pairs():
    """Sharma, Wu and Dalal (2005), table 1: pairs 1, 17 and 25, so the palette's distances are measured right."""
    assert round(ciede2000((50, 2.6772, -79.7751), (50, 0, -82.7485)), 4) == 2.0425
    assert round(ciede2000((50, 2.5, 0), (73, 25, -18)), 4) == 27.1492
    assert round(ciede2000((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387)), 4) == 1.2644
    assert delta_e76((50, 2.5, 0), (73, 25, -18)) == pytest.approx(36.868, abs=0.001)  # √(23² + 22.5² + 18²)


@pytest.mark.parametrize("vision", sorted(DICHROMACY))
def test_a_dichromat_sees_greys_unchanged_and_confuses_what_the_simulation_is_known_for(vision):
    """Machado et al.'s matrices keep every grey (each row adds up to 1). Red and green, far apart to normal vision,
    are close to a protanope and a deuteranope; blue and green, to a tritanope."""
    for grey in ("#000000", "#7F7F7F", "#FFFFFF"):
        assert hex_colour(as_seen_with(grey, vision)) == grey
    confused = ("#B00000", "#6A7A00") if vision != "tritanopia" else ("#00A0A0", "#6A8FFF")
    assert colour_difference(*confused) > 30
    assert colour_difference(*confused, vision) < 0.5 * colour_difference(*confused)


def test_the_closest_pair_is_named():
    colours = {"red": "#FF0000", "dark red": "#EE0000", "blue": "#0000FF"}
    distance, first, second = closest_pair(colours)
    assert {first, second} == {"red", "dark red"} and distance == pytest.approx(colour_difference("#FF0000", "#EE0000"))


def _wcag_relative_luminance(rgb) -> float:
    """WCAG 2.2's relative luminance, written out as the standard gives it (sRGB, its 0.04045 knee)."""
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("rgb", [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0),
                                 (0.04045, 0.04045, 0.04045), (10 / 255, 10 / 255, 10 / 255),
                                 (11 / 255, 11 / 255, 11 / 255), (0.5, 0.5, 0.5), (213 / 255, 94 / 255, 0.0)])
def test_the_reports_contrast_checks_take_wcags_relative_luminance_from_the_colour_science(rgb):
    """plots.relative_luminance (what every contrast check of a report and its tests measures with) is the Y of
    colours.xyz, and gives WCAG's figure exactly: black, white, each primary, greys either side of the knee, vip's
    vermillion."""
    from vipcli.plots import contrast_ratio, relative_luminance

    assert relative_luminance(rgb) == _wcag_relative_luminance(rgb) == xyz(rgb)[1]
    assert contrast_ratio(rgb, rgb) == 1.0


def test_wcags_contrast_ratio_of_black_on_white_is_21_to_1():
    """The WCAG ratio's ends: black on white 21:1, either way round."""
    from vipcli.plots import contrast_ratio

    assert contrast_ratio((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)) == contrast_ratio((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)) == 21.0
