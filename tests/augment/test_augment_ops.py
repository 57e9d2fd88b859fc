"""Pixel behaviour of the augmentation ops on asymmetric patterns with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from segkit.augment.ops import Contrast, Flip, GaussianBlur, Rotate, apply_ops
from segkit.augment.plan import make_ops
from segkit.errors import UsageError


def asymmetric_slice(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """An 'L' mask off-centre (no symmetry at all) on an image with a horizontal+vertical ramp."""
    q = size // 8
    mask = np.zeros((size, size), np.uint8)
    mask[2 * q:6 * q, 2 * q:3 * q] = 1  # the L's stem, left of centre
    mask[5 * q:6 * q, 3 * q:5 * q] = 1  # its foot, pointing right (all within the rotation-safe disc)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    image = (0.3 * xx / size + 0.1 * yy / size + 0.5 * mask).astype(np.float32)
    return image, mask


def test_horizontal_flip_mirrors_columns_of_image_and_mask() -> None:
    image, mask = asymmetric_slice()
    out_image, out_mask = Flip().apply(image, mask, {"axis": "horizontal"})
    np.testing.assert_array_equal(out_image, image[:, ::-1])
    np.testing.assert_array_equal(out_mask, mask[:, ::-1])


def test_vertical_flip_mirrors_rows_of_image_and_mask() -> None:
    image, mask = asymmetric_slice()
    out_image, out_mask = Flip().apply(image, mask, {"axis": "vertical"})
    np.testing.assert_array_equal(out_image, image[::-1, :])
    np.testing.assert_array_equal(out_mask, mask[::-1, :])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotation_by_multiples_of_90_degrees_is_an_exact_pixel_permutation(k: int) -> None:
    image, mask = asymmetric_slice()
    out_image, out_mask = Rotate().apply(image, mask, {"angle": 90.0 * k})
    np.testing.assert_array_equal(out_image, np.rot90(image, k))
    np.testing.assert_array_equal(out_mask, np.rot90(mask, k))


def test_arbitrary_rotation_moves_the_mask_with_the_image() -> None:
    # Image = the mask itself: the rotated mask must be exactly the rotated image thresholded at 0.5.
    _, mask = asymmetric_slice(64)
    image = mask.astype(np.float32)
    out_image, out_mask = Rotate().apply(image, mask, {"angle": 23.5})
    np.testing.assert_array_equal(out_mask, (out_image >= 0.5).astype(np.uint8))
    # And the mask's centroid turns about the slice centre by +23.5° (counter-clockwise on screen).
    centre = (64 - 1) / 2
    y0, x0 = np.argwhere(mask).mean(axis=0) - centre
    y1, x1 = np.argwhere(out_mask).mean(axis=0) - centre
    t = np.deg2rad(23.5)
    expected_x = x0 * np.cos(t) + y0 * np.sin(t)
    expected_y = -x0 * np.sin(t) + y0 * np.cos(t)
    assert abs(x1 - expected_x) < 0.5 and abs(y1 - expected_y) < 0.5
    assert abs(int(out_mask.sum()) - int(mask.sum())) <= 0.05 * mask.sum()


@pytest.mark.parametrize("angle", [-24.99, -7.3, 0.01, 13.0, 44.4])
def test_rotated_mask_stays_strictly_binary(angle: float) -> None:
    image, mask = asymmetric_slice()
    _, out_mask = Rotate().apply(image, mask, {"angle": angle})
    assert out_mask.dtype == np.uint8
    assert set(np.unique(out_mask).tolist()) <= {0, 1}
    assert out_mask.any()


def test_rotation_fills_exposed_corners_with_the_slice_background() -> None:
    image, mask = asymmetric_slice()
    image = image + 2.0  # background (minimum) is now 2.0, not 0
    out_image, _ = Rotate().apply(image, mask, {"angle": 45.0})
    assert out_image[0, 0] == pytest.approx(float(image.min()))
    assert out_image.min() >= image.min() - 1e-6


def test_blur_smooths_the_image_and_leaves_the_mask_untouched() -> None:
    _, mask = asymmetric_slice()
    image = mask.astype(np.float32)  # sharp edges only
    out_image, out_mask = GaussianBlur().apply(image, mask, {"sigma": 1.2})
    assert out_mask is mask
    assert out_image.dtype == np.float32 and out_image.shape == image.shape
    # A unit step becomes a ramp, and the result is the textbook Gaussian (scipy's, mirrored border).
    assert np.abs(np.diff(out_image, axis=1)).max() < 0.5
    reference = ndimage.gaussian_filter(image, 1.2, mode="mirror", truncate=4.0)
    np.testing.assert_allclose(out_image, reference, atol=2e-3)
    assert out_image.mean() == pytest.approx(image.mean(), abs=1e-3)


@pytest.mark.parametrize("params", [
    {"gamma": 0.5, "gain": 1.3, "bias": 0.2},
    {"gamma": 2.0, "gain": 0.7, "bias": -0.3},
    {"gamma": 1.0, "gain": 1.0, "bias": 0.0},
])
def test_contrast_stays_within_the_slice_range_and_leaves_the_mask_untouched(params: dict) -> None:
    image, mask = asymmetric_slice()
    out_image, out_mask = Contrast().apply(image, mask, params)
    assert out_mask is mask
    assert out_image.dtype == np.float32
    assert out_image.min() >= image.min() and out_image.max() <= image.max()
    if params["gamma"] == 1.0 and params["gain"] == 1.0:
        np.testing.assert_allclose(out_image, image, atol=1e-6)
    else:
        assert not np.allclose(out_image, image, atol=1e-3)


def test_contrast_of_a_constant_slice_is_the_slice() -> None:
    image = np.full((8, 8), 0.25, np.float32)
    mask = np.zeros((8, 8), np.uint8)
    out_image, _ = Contrast().apply(image, mask, {"gamma": 0.5, "gain": 1.2, "bias": 0.1})
    np.testing.assert_array_equal(out_image, image)


def test_recorded_steps_replay_to_the_same_bytes() -> None:
    image, mask = asymmetric_slice()
    steps = [{"op": "flip", "axis": "vertical"}, {"op": "rotate", "angle": 11.25},
             {"op": "blur", "sigma": 0.8}, {"op": "contrast", "gamma": 1.2, "gain": 0.95, "bias": 0.05}]
    direct_image, direct_mask = image, mask
    for op, step in zip(make_ops(), steps):
        direct_image, direct_mask = op.apply(direct_image, direct_mask, {k: v for k, v in step.items() if k != "op"})
    replay_image, replay_mask = apply_ops(image, mask, json.loads(json.dumps(steps)))
    assert replay_image.tobytes() == direct_image.tobytes()
    assert replay_mask.tobytes() == direct_mask.tobytes()
    # Inputs untouched.
    np.testing.assert_array_equal((image, mask), asymmetric_slice())


def test_unknown_op_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown op 'shear'; choose from flip, rotate, blur, contrast"):
        make_ops(["flip", "shear"])


def test_inverted_range_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"angle must satisfy low <= high .* got \(10.0, -10.0\)"):
        make_ops(["rotate"], {"rotate": {"angle": (10, -10)}})


def test_non_positive_sigma_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"sigma must be positive"):
        GaussianBlur(sigma=(0.0, 1.0))


def test_ops_come_out_in_canonical_order_whatever_the_input_order() -> None:
    assert [op.name for op in make_ops(["contrast", "flip", "rotate"])] == ["flip", "rotate", "contrast"]


def test_cli_settings_parse_into_op_settings() -> None:
    from segkit.augment.plan import parse_settings

    settings = parse_settings(["rotate.angle=-10,10", "blur.p=0.25", "flip.axes=horizontal"])
    assert settings == {"rotate": {"angle": (-10.0, 10.0)}, "blur": {"p": 0.25}, "flip": {"axes": ("horizontal",)}}
    ops = make_ops(["flip", "rotate", "blur"], settings)
    assert ops[1].angle == (-10.0, 10.0) and ops[2].p == 0.25 and ops[0].axes == ("horizontal",)


@pytest.mark.parametrize("item, message", [
    ("rotate.angle", "expected OP.KEY=VALUE"),
    ("twist.angle=1,2", "unknown op 'twist'"),
    ("rotate.sigma=1,2", r"rotate has no setting 'sigma'; it has angle, p\.$"),
    ("blur.sigma=1", "blur.sigma takes a range LOW,HIGH"),
    ("contrast.gamma=a,b", "contrast.gamma takes numbers"),
])
def test_malformed_cli_settings_are_usage_errors(item: str, message: str) -> None:
    from segkit.augment.plan import parse_settings

    with pytest.raises(UsageError, match=message):
        parse_settings([item])


@pytest.mark.parametrize("shape", [(32, 32), (61, 47), (256, 256)])
def test_single_pass_render_gives_the_bytes_of_op_by_op_replay(shape) -> None:
    # Every planned combination of the four ops, on slices with and without a tumour
    # and a constant one, rendered into reused rows of one block as augment does.
    from itertools import combinations

    from segkit.augment.ops import apply_ops_stepwise
    from segkit.augment.render import render

    rng = np.random.default_rng(sum(shape))
    h, w = shape
    image = rng.random(shape, dtype=np.float32) * 0.8 + 0.1
    mask = np.zeros(shape, np.uint8)
    mask[h // 3: h // 2, w // 4: w // 2] = 1
    cases = [(image, mask), (image, np.zeros(shape, np.uint8)), (np.full(shape, 0.4, np.float32), mask)]
    before = [(a.copy(), b.copy()) for a, b in cases]
    ops = make_ops()
    block_image, block_mask = np.full((2, h, w), np.nan, np.float32), np.full((2, h, w), 7, np.uint8)
    scratch = np.empty(shape, np.float32)
    mask_scratch = np.full((2, h, w), np.nan, np.float32)
    n = 0
    for k in range(0, 5):
        for chosen in combinations(ops, k):
            for image_in, mask_in in cases:
                steps = [{"op": op.name, **op.draw(rng)} for op in chosen]
                expected = apply_ops_stepwise(image_in, mask_in, steps)
                row = n % 2
                got = render(image_in, mask_in, steps, block_image[row], block_mask[row], scratch,
                             mask_scratch if n % 3 else None)  # reused buffers, or its own
                assert got[0].tobytes() == expected[0].tobytes(), steps
                assert got[1].tobytes() == expected[1].tobytes(), steps
                assert apply_ops(image_in, mask_in, steps)[0].tobytes() == expected[0].tobytes()
                n += 1
    assert n == 16 * len(cases)
    for (a, b), (a0, b0) in zip(cases, before):  # inputs untouched
        assert a.tobytes() == a0.tobytes() and b.tobytes() == b0.tobytes()
