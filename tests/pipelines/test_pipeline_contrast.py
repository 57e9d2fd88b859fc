"""On-the-fly training augmentation (segkit.pipelines.contrast): seeded, image-only intensity changes
(random curve, gamma, scale, head inversion) and exact flips / quarter turns of image and mask together."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.train
pytest.importorskip("tensorflow")
pytest.importorskip("tf_keras")

from segkit.pipelines.contrast import contrast_settings, make_contrast, make_dihedral  # noqa: E402


def _head(size: int = 32) -> np.ndarray:
    """A dark background (0.02), a skull ring (0.06) and tissue from 0.2 to 0.9: H×W×1 float32."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    image = np.full((size, size), 0.02, np.float32)
    image[r < 14] = 0.06
    image[r < 12] = 0.2 + 0.7 * (xx[r < 12] / size)
    return image[..., None]


def _run(settings: dict, seed: int, epoch: int, position: int, image: np.ndarray) -> np.ndarray:
    return make_contrast(contrast_settings(settings), seed)(image, epoch, position).numpy()


def test_the_same_seed_epoch_and_position_draw_the_same_sample():
    image = _head()
    settings = {"remap": 0.5, "invert": 0.5}
    a = _run(settings, 3, 2, 7, image)
    np.testing.assert_array_equal(a, _run(settings, 3, 2, 7, image))
    others = [_run(settings, 3, 2, p, image) for p in range(8)] + [_run(settings, 4, 2, 7, image)]
    assert any(not np.array_equal(a, o) for o in others)


def test_inversion_flips_the_head_and_keeps_background_and_skull():
    image = _head()
    out = _run({"remap": 0.0, "p": 0.0, "invert": 1.0, "invert_threshold": 0.1}, 0, 0, 0, image)
    head = image > 0.1
    np.testing.assert_allclose(out[head], 1.1 - image[head], atol=1e-6)
    np.testing.assert_array_equal(out[~head], image[~head])
    # the order of tissue brightness is reversed inside the head
    inside = image[head]
    assert np.corrcoef(inside, out[head])[0, 1] < -0.99


def test_without_inversion_the_draws_are_those_of_runs_made_before_it_existed():
    image = _head()
    old = {"remap": 0.5, "knots": 5, "p": 0.5, "gamma": [0.7, 1.5], "scale": [0.9, 1.1]}
    for position in range(6):
        np.testing.assert_array_equal(_run(old, 1, 3, position, image), _run({**old, "invert": 0.0}, 1, 3, position, image))


def test_inversion_probability_is_honoured_over_many_samples():
    image = _head()
    settings = {"remap": 0.0, "p": 0.0, "invert": 0.5}
    inverted = [bool(_run(settings, 0, 0, p, image)[16, 8, 0] != image[16, 8, 0]) for p in range(200)]
    assert 70 < sum(inverted) < 130


def test_dihedral_moves_image_and_mask_together_exactly():
    rng = np.random.default_rng(0)
    image = rng.random((16, 16, 1)).astype(np.float32)
    mask = (rng.random((16, 16, 1)) > 0.7).astype(np.float32)
    flip = make_dihedral(5)
    seen = set()
    for position in range(32):
        img, msk = (t.numpy() for t in flip(image, mask, 0, position))
        # the same one of the 8 symmetries was applied to both
        matches = [k for k in range(8)
                   if np.array_equal(img, _sym(image, k)) and np.array_equal(msk, _sym(mask, k))]
        assert len(matches) >= 1
        seen.add(matches[0])
    assert len(seen) >= 6


def _sym(a: np.ndarray, k: int) -> np.ndarray:
    out = np.rot90(a, k % 4, axes=(0, 1))
    return out[:, ::-1] if k >= 4 else out


def _ring(size: int = 32) -> np.ndarray:
    """A tumour ring (1) around a core that is not target (0): a hole in the mask."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    return ((r < 9) & (r >= 4)).astype(np.uint8)


def test_hole_label_marks_only_the_enclosed_pixels():
    from segkit.pipelines.contrast import HOLE, hole_label

    ring = _ring()
    labelled = hole_label(ring)
    yy, xx = np.mgrid[:32, :32]
    core = np.hypot(yy - 16, xx - 16) < 4
    np.testing.assert_array_equal(labelled == HOLE, core)
    np.testing.assert_array_equal(labelled == 1, ring == 1)
    disc = (np.hypot(yy - 16, xx - 16) < 9).astype(np.uint8)  # no hole: nothing marked
    np.testing.assert_array_equal(hole_label(disc), disc)
    np.testing.assert_array_equal(hole_label(np.zeros((8, 8), np.uint8)), np.zeros((8, 8), np.uint8))


def test_hole_brightness_changes_only_the_hole_and_keeps_its_texture():
    rng = np.random.default_rng(1)
    image = np.clip(_head() + rng.normal(0, 0.01, (32, 32, 1)).astype(np.float32), 0, 1)
    hole = (_ring() == 0) & (np.hypot(*np.mgrid[-16:16, -16:16]) < 4)
    augment = make_contrast(contrast_settings({"remap": 0.0, "p": 0.0, "hole": 1.0}), 0)
    levels = set()
    for position in range(6):
        out = augment(image, 0, position, hole[..., None]).numpy()[..., 0]
        np.testing.assert_array_equal(out[~hole], image[..., 0][~hole])
        shift = out[hole] - image[..., 0][hole]
        inside = (out[hole] > 0) & (out[hole] < 1)  # the shifted values are clipped to [0, 1]
        assert inside.sum() >= 30
        np.testing.assert_allclose(shift[inside], shift[inside][0], atol=1e-5)  # one offset: the texture is kept
        levels.add(round(float(out[hole].mean()), 3))
    assert len(levels) == 6  # a new brightness each sample
    # without a hole map (validation, old callers) or with p 0 nothing changes
    np.testing.assert_array_equal(augment(image, 0, 0).numpy(), image)
    off = make_contrast(contrast_settings({"remap": 0.0, "p": 0.0, "hole": 0.0}), 0)
    np.testing.assert_array_equal(off(image, 0, 0, hole[..., None]).numpy(), image)


def _textured_ring_image():
    """A head with a bright tumour ring (0.6) around a darker core (0.3), both textured: image, hole, target."""
    from segkit.pipelines.contrast import HOLE, hole_label

    rng = np.random.default_rng(2)
    labelled = hole_label(_ring())
    image = _head()[..., 0].copy()
    image[labelled == 1] = 0.6
    image[labelled == HOLE] = 0.3
    image = np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1).astype(np.float32)[..., None]
    return image, labelled == HOLE, labelled == 1, labelled


def test_fill_gives_the_core_its_tumours_brightness_keeps_the_texture_and_makes_it_target():
    from segkit.pipelines.contrast import make_core_fill

    image, hole, target, _ = _textured_ring_image()
    settings = contrast_settings({"remap": 0.0, "p": 0.0, "hole": 0.0, "fill": 1.0})
    augment, filled = make_contrast(settings, 0), make_core_fill(settings, 0)
    for position in range(4):
        out = augment(image, 0, position, hole[..., None], target[..., None]).numpy()[..., 0]
        np.testing.assert_array_equal(out[~hole], image[..., 0][~hole])
        assert abs(out[hole].mean() - image[..., 0][target].mean()) < 1e-5  # the tumour's brightness
        shift = out[hole] - image[..., 0][hole]
        np.testing.assert_allclose(shift, shift[0], atol=1e-5)  # one offset: the core's texture is kept
        assert bool(filled(0, position))


def test_hole_and_fill_share_one_draw_so_adding_fill_keeps_every_redraw():
    from segkit.pipelines.contrast import make_core_fill

    image, hole, target, _ = _textured_ring_image()
    redraw = make_contrast(contrast_settings({"remap": 0.0, "p": 0.0, "hole": 0.5}), 3)
    both_settings = contrast_settings({"remap": 0.0, "p": 0.0, "hole": 0.5, "fill": 0.3})
    both, filled = make_contrast(both_settings, 3), make_core_fill(both_settings, 3)
    kinds = {"redrawn": 0, "filled": 0, "kept": 0}
    for position in range(60):
        alone = redraw(image, 1, position, hole[..., None]).numpy()
        out = both(image, 1, position, hole[..., None], target[..., None]).numpy()
        if not np.array_equal(alone, image):  # redrawn by hole: the same with fill on
            np.testing.assert_array_equal(out, alone)
            assert not bool(filled(1, position))
            kinds["redrawn"] += 1
        elif bool(filled(1, position)):
            assert abs(out[..., 0][hole].mean() - image[..., 0][target].mean()) < 1e-5
            kinds["filled"] += 1
        else:
            np.testing.assert_array_equal(out, image)
            kinds["kept"] += 1
    assert 15 <= kinds["redrawn"] <= 45 and kinds["filled"] >= 8 and kinds["kept"] >= 5  # about 30, 18 and 12


def test_a_filled_core_is_target_in_the_training_pair_and_a_redrawn_one_is_not():
    from segkit.pipelines.contrast import make_core_fill
    from segkit.pipelines.tfdata import PipelineSpec, _preprocess_fn

    image, hole, _, labelled = _textured_ring_image()
    for fill, expected in ((1.0, (labelled > 0)), (0.0, (labelled == 1))):
        settings = contrast_settings({"remap": 0.0, "p": 0.0, "hole": 1.0 - fill, "fill": fill})
        spec = PipelineSpec(input_size=32, backbone="resnet18", batch_size=1, contrast=settings)
        prepare = _preprocess_fn(spec, make_contrast(settings, 0), None, make_core_fill(settings, 0))
        _, y = prepare(image[..., 0], labelled, 0, 7)
        np.testing.assert_array_equal(y.numpy()[..., 0] > 0, expected)


def test_hole_plus_fill_above_one_is_refused_before_training():
    from segkit.errors import UsageError
    from segkit.train.config import load_config

    with pytest.raises(UsageError, match="hole .* fill"):
        load_config("cpu-small", overrides={"data": {"contrast": {"hole": 0.6, "fill": 0.6}}})
    assert load_config("cpu-small", overrides={"data": {"contrast": {"hole": 0.5, "fill": 0.5}}})


def test_a_redrawn_core_keeps_the_margin_from_its_tumours_brightness():
    image, hole, target, _ = _textured_ring_image()
    tumour = image[..., 0][target].mean()
    augment = make_contrast(contrast_settings({"remap": 0.0, "p": 0.0, "hole": 1.0, "hole_margin": 0.2}), 0)
    levels = [augment(image, 0, k, hole[..., None], target[..., None]).numpy()[..., 0][hole].mean() for k in range(40)]
    levels = np.asarray(levels)
    assert np.all(np.abs(levels - tumour) >= 0.2 - 1e-3)  # (clipping at 0 and 1 only moves a level away)
    assert (levels < tumour).sum() >= 5 and (levels > tumour).sum() >= 5  # both sides are drawn
