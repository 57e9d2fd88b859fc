"""segkit.convert.rasterize: pixel-centre, even-odd polygon filling, exact on known shapes."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import points_in_poly

from segkit.convert.rasterize import fill_polygons, polygon_area


def square(x0: float, y0: float, side: float) -> np.ndarray:
    return np.array([[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]], dtype=float)


def test_pixel_edge_square_covers_exactly_its_pixels():
    # corners on pixel edges: pixels 2..6 × 3..7 (5×5) are inside, nothing else
    mask = fill_polygons([square(1.5, 2.5, 5)], (12, 12))
    expected = np.zeros((12, 12), bool)
    expected[3:8, 2:7] = True
    np.testing.assert_array_equal(mask, expected)


def test_integer_cornered_rectangle_covers_its_area_half_open():
    # centres on the left/top edge are inside, on the right/bottom edge outside
    mask = fill_polygons([np.array([[0, 0], [4, 0], [4, 3], [0, 3]], float)], (8, 8))
    assert mask.sum() == 12
    assert mask[0, 0] and mask[2, 3] and not mask[3, 0] and not mask[0, 4]


def test_right_triangle_has_the_known_pixel_count():
    # legs of 10.5 from the corner (-0.5, -0.5): centres (c, r) with c + r <= 9 → 10·11/2
    triangle = np.array([[-0.5, -0.5], [10.0, -0.5], [-0.5, 10.0]])
    mask = fill_polygons([triangle], (16, 16))
    assert mask.sum() == 55
    rows, cols = np.nonzero(mask)
    assert (rows + cols).max() == 9


def test_inner_contour_is_a_hole():
    ring = [square(-0.5, -0.5, 10), square(2.5, 2.5, 4)]  # 10×10 outer, 4×4 inner
    mask = fill_polygons(ring, (10, 10))
    assert mask.sum() == 100 - 16
    assert not mask[3:7, 3:7].any() and mask[2, 2] and mask[7, 7]


def test_overlapping_contours_cancel_where_they_overlap():
    mask = fill_polygons([square(-0.5, -0.5, 4), square(1.5, 1.5, 4)], (8, 8))
    assert mask.sum() == 16 + 16 - 2 * 4
    assert not mask[2:4, 2:4].any()


def test_agrees_with_point_in_polygon_on_random_self_intersecting_polygons():
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:23, :31]
    centres = np.c_[cols.ravel(), rows.ravel()]
    for _ in range(100):
        poly = rng.uniform(-4, 35, (int(rng.integers(3, 12)), 2))
        expected = points_in_poly(centres, poly).reshape(23, 31)
        np.testing.assert_array_equal(fill_polygons([poly], (23, 31)), expected)


@pytest.mark.parametrize("poly", [
    np.empty((0, 2)),
    np.array([[1.0, 1.0], [5.0, 5.0]]),                    # two points
    np.array([[1.0, 1.0], [3.0, 3.0], [5.0, 5.0]]),        # collinear: zero area
    np.array([[1.0, 2.0], [6.0, 2.0], [3.0, 2.0]]),        # horizontal only
])
def test_degenerate_polygons_add_nothing(poly):
    assert not fill_polygons([poly], (8, 8)).any()


def test_polygons_beyond_the_image_are_clipped():
    mask = fill_polygons([square(-10.5, -10.5, 15)], (8, 8))  # covers pixels 0..4 of an 8×8 image
    assert mask.sum() == 25 and mask[:5, :5].all()


def test_polygon_area_is_the_shoelace_area():
    assert polygon_area(square(0, 0, 3)) == 9.0
    assert polygon_area(np.array([[0, 0], [4, 0], [0, 2]], float)) == 4.0
