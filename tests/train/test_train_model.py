"""The paper's blocks and the three model variants (build only; tiny sizes except the 512² shape check)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.train
pytest.importorskip("tensorflow")
pytest.importorskip("tf_keras")


@pytest.fixture(scope="module")
def tfk():
    from segkit.train.backend import load

    b = load()
    return b.tf, b.keras


@pytest.fixture(scope="module")
def blocks():
    from segkit.train import blocks

    return blocks


def small(variant: str, **model: object) -> dict:
    from segkit.train.config import load_config

    return load_config("cpu-small", overrides={"model": {"variant": variant, "input_size": 32, **model}})


def block_names(model) -> list[str]:
    from segkit.train.blocks import CUSTOM_OBJECTS

    return sorted(type(layer).__name__ for layer in model.layers if type(layer).__name__ in CUSTOM_OBJECTS)


def test_resnet50_at_512_has_the_papers_stages_and_1024_tokens():
    from segkit.train.config import load_config
    from segkit.train.model import build_model, encoder_feature_layers

    model = build_model(load_config("paper", overrides={"model": {"encoder_weights": "none"}}))
    shapes = [tuple(model.get_layer(n).output.shape[1:]) for n in reversed(encoder_feature_layers("resnet50"))]
    assert shapes == [(256, 256, 64), (128, 128, 256), (64, 64, 512), (32, 32, 1024)]
    bottleneck = model.get_layer("bottleneck")
    h, w, c = bottleneck.grid
    assert (h * w, c) == (1024, 1024)
    assert tuple(bottleneck.position.embedding.shape) == (1024, 1024)
    assert len(bottleneck.blocks) == 4 and bottleneck.blocks[0].attention._num_heads == 8
    assert tuple(model.output_shape) == (None, 512, 512, 1)


def test_se_with_zero_weights_halves_the_input(tfk, blocks):
    tf, _ = tfk
    se = blocks.SqueezeExcite(ratio=4)
    x = tf.random.stateless_normal((2, 5, 5, 8), seed=[1, 2])
    se(x)
    se.set_weights([np.zeros_like(w) for w in se.get_weights()])
    np.testing.assert_array_equal(se(x).numpy(), x.numpy() * 0.5)


def test_cbam_with_zero_weights_quarters_the_input(tfk, blocks):
    tf, _ = tfk
    cbam = blocks.CBAM(ratio=4, kernel_size=7)
    x = tf.random.stateless_normal((1, 6, 6, 8), seed=[3, 4])
    assert cbam(x).shape == x.shape
    cbam.set_weights([np.zeros_like(w) for w in cbam.get_weights()])
    # channel attention σ(0)=½, then spatial attention σ(0)=½
    np.testing.assert_allclose(cbam(x).numpy(), x.numpy() * 0.25, rtol=0, atol=1e-7)


def test_gate_with_psi_one_is_identity_and_psi_zero_blocks(tfk, blocks):
    tf, _ = tfk
    gate = blocks.EfficientAttentionGate(inter_channels=4)
    skip = tf.random.stateless_normal((1, 8, 8, 6), seed=[5, 6])
    g = tf.random.stateless_normal((1, 8, 8, 3), seed=[7, 8])
    assert gate([skip, g]).shape == skip.shape
    gate.psi.set_weights([np.zeros((1, 1, 4, 1), "float32"), np.array([100.0], "float32")])  # ψ = σ(100) = 1
    np.testing.assert_array_equal(gate([skip, g]).numpy(), skip.numpy())
    gate.psi.set_weights([np.zeros((1, 1, 4, 1), "float32"), np.array([-100.0], "float32")])  # ψ ≈ 0
    assert np.abs(gate([skip, g]).numpy()).max() < 1e-30


def test_gate_bias_starts_every_gate_open_and_keeps_the_other_weights(tfk, blocks):
    tf, _ = tfk
    x = tf.random.stateless_normal((1, 6, 6, 8), seed=[3, 4])
    g = tf.random.stateless_normal((1, 6, 6, 3), seed=[7, 8])
    open_ = 1 / (1 + np.exp(-3.0))  # σ(3) ≈ 0.95
    for make, factor in ((lambda b: blocks.SqueezeExcite(4, gate_bias=b), open_),
                         (lambda b: blocks.CBAM(4, gate_bias=b), open_ * open_)):
        layer = make(3.0)
        layer(x)
        # zero kernels leave only the biases: the gates' product is σ(3) per gate instead of σ(0) = ½
        layer.set_weights([w if w.ndim == 1 and np.any(w) else np.zeros_like(w) for w in layer.get_weights()])
        np.testing.assert_allclose(layer(x).numpy(), x.numpy() * factor, rtol=1e-6, atol=1e-7)
    gate = blocks.EfficientAttentionGate(4, gate_bias=3.0)
    gate([x, g])
    np.testing.assert_allclose(gate.psi.get_weights()[1], [3.0])


def test_gate_bias_changes_only_the_gate_biases_of_a_built_model(tfk):
    from segkit.train.model import build_model

    _, keras = tfk
    weights = {}
    for bias in (0.0, 3.0):
        keras.utils.set_random_seed(0)
        model = build_model(small("hybrid", gate_bias=bias))
        weights[bias] = {w.name: w.numpy() for w in model.weights}
    differ = sorted(name for name in weights[0.0] if not np.array_equal(weights[0.0][name], weights[3.0][name]))
    assert differ and all(n.endswith("bias:0") and any(k in n for k in ("excite", "mlp_out", "spatial", "psi"))
                          for n in differ), differ


def test_resnext_block_with_zero_convolutions_is_relu_of_its_shortcut(tfk, blocks):
    tf, _ = tfk
    x = tf.random.stateless_normal((1, 6, 6, 16), seed=[9, 10])
    block = blocks.ResNeXtBlock(16, groups=0)
    assert block(x).shape == (1, 6, 6, 16)
    for conv in (block.reduce, block.grouped, block.expand):
        conv.set_weights([np.zeros_like(w) for w in conv.get_weights()])
    np.testing.assert_array_equal(block(x, training=False).numpy(), np.maximum(x.numpy(), 0))
    widened = blocks.ResNeXtBlock(24, groups=4)
    assert widened(x).shape == (1, 6, 6, 24) and widened.project is not None
    assert widened.grouped.groups == 4


def test_transformer_bottleneck_keeps_the_map_and_sees_one_token_per_pixel(tfk, blocks):
    tf, _ = tfk
    x = tf.random.stateless_normal((2, 4, 3, 16), seed=[11, 12])
    bottleneck = blocks.TransformerBottleneck(depth=2, heads=4, hidden=32, dropout=0.1, seed=3)
    y = bottleneck(x, training=False)
    assert y.shape == x.shape
    assert bottleneck.tokens(x).shape == (2, 12, 16)
    np.testing.assert_array_equal(bottleneck(x, training=False).numpy(), y.numpy())
    assert not np.array_equal(bottleneck(x, training=True).numpy(), y.numpy())


def test_seeded_dropout_masks_follow_the_checkpointed_call_count(tfk, blocks):
    tf, _ = tfk
    drop = blocks.SeededDropout(0.5, seed=7)
    x = tf.ones((4, 64))
    np.testing.assert_array_equal(drop(x, training=False).numpy(), x.numpy())
    first, second = drop(x, training=True).numpy(), drop(x, training=True).numpy()
    assert set(np.unique(first)) == {0.0, 2.0} and not np.array_equal(first, second)
    drop.calls.assign(0)  # what restoring a checkpoint taken before the first step does
    np.testing.assert_array_equal(drop(x, training=True).numpy(), first)
    other = blocks.SeededDropout(0.5, seed=8)
    assert not np.array_equal(other(x, training=True).numpy(), first)


@pytest.mark.parametrize("make", [
    lambda b: b.SqueezeExcite(ratio=4, gate_bias=3.0), lambda b: b.CBAM(ratio=2, kernel_size=3, gate_bias=3.0),
    lambda b: b.ResNeXtBlock(12, groups=2, bottleneck_ratio=0.5), lambda b: b.ConvBnReLU(5),
    lambda b: b.SeededDropout(0.2, seed=4), lambda b: b.PositionalEmbedding(),
    lambda b: b.TransformerBlock(heads=2, hidden=8, dropout=0.1, activation="relu", seed=2),
], ids=["se", "cbam", "resnext", "convbnrelu", "dropout", "position", "transformer_block"])
def test_block_round_trips_through_get_config(tfk, blocks, make):
    tf, keras = tfk
    layer = make(blocks)
    shape = (1, 9, 8) if type(layer).__name__ in ("PositionalEmbedding", "TransformerBlock") else (1, 4, 4, 8)
    x = tf.random.stateless_normal(shape, seed=[1, 1])
    y = layer(x)
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x).numpy(), y.numpy())


def test_gate_and_bottleneck_round_trip_through_get_config(tfk, blocks):
    _, keras = tfk
    for layer in (blocks.EfficientAttentionGate(6, name="g"), blocks.EfficientAttentionGate(6, gate_bias=3.0, name="g3"),
                  blocks.TransformerBottleneck(2, 2, 8, 0.1, "relu", seed=5)):
        clone = keras.layers.deserialize(keras.layers.serialize(layer))
        assert clone.get_config() == layer.get_config()


def test_variants_differ_exactly_in_their_blocks():
    from segkit.train.model import build_model

    unet = build_model(small("unet"))
    assert block_names(unet) == [] and unet.get_layer("decoder_stage4b_conv")  # segmentation_models' U-Net
    ut = build_model(small("unet_transformer"))
    assert block_names(ut) == ["ConvBnReLU"] * 8 + ["TransformerBottleneck"]
    hybrid = build_model(small("hybrid"))
    names = block_names(hybrid)
    assert names.count("TransformerBottleneck") == 1
    assert names.count("SqueezeExcite") == 4 + 4  # four encoder stages + four decoder blocks
    assert names.count("CBAM") == 4 and names.count("EfficientAttentionGate") == 3  # the last stage has no skip
    assert names.count("ResNeXtBlock") == 4 and names.count("ConvBnReLU") == 4
    for switch, gone, replaced_by in [("se", "SqueezeExcite", None), ("cbam", "CBAM", None),
                                      ("attention_gate", "EfficientAttentionGate", None),
                                      ("resnext", "ResNeXtBlock", "ConvBnReLU"),
                                      ("transformer", "TransformerBottleneck", None)]:
        ablated = block_names(build_model(small("hybrid", **{switch: False})))
        expected = [n for n in names if n != gone] + ([replaced_by] * names.count(gone) if replaced_by else [])
        assert ablated == sorted(expected), switch


def test_model_dropout_is_all_seeded(tfk):
    _, keras = tfk
    from segkit.train.blocks import SeededDropout
    from segkit.train.model import build_model

    model = build_model(small("hybrid"))
    found = []

    def walk(layer):
        if isinstance(layer, keras.layers.Dropout) or isinstance(layer, SeededDropout):
            found.append(layer)
        for sub in getattr(layer, "_flatten_layers", lambda **_: [])(include_self=False, recursive=False):
            walk(sub)

    for layer in model.layers:
        walk(layer)
    assert found and all(type(d) is SeededDropout for d in found)
    assert len({d.seed for d in found}) == len(found) == 2 * 4  # 2 blocks × (attention + 3 dropouts)
    counters = [w for w in model.non_trainable_weights if w.name.endswith("calls:0")]
    assert len(counters) == len(found)


def test_encoder_weights_load_from_a_local_h5(tmp_path):
    from segkit.train.model import build_backbone, build_model

    reference = build_backbone("resnet18", 32)
    path = tmp_path / "resnet18_no_top.h5"
    reference.save_weights(str(path))
    model = build_model(small("hybrid", encoder_weights=str(path)))
    for name in ("conv0", "stage3_unit1_conv1"):
        for got, want in zip(model.get_layer(name).get_weights(), reference.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)


def test_imagenet_without_a_local_file_says_where_to_put_it(tmp_path, monkeypatch):
    from segkit.errors import InputError
    from segkit.train.model import build_model

    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(InputError, match=r"resnet18_imagenet_1000_no_top\.h5 to .*\.keras/models/.*--encoder-weights"):
        build_model(small("hybrid", encoder_weights="imagenet"))


def test_encoder_weights_of_the_wrong_kind_are_a_clear_error(tmp_path):
    from segkit.errors import InputError
    from segkit.train.model import build_model

    bad = tmp_path / "notes.h5"
    bad.write_text("not hdf5")
    with pytest.raises(InputError, match=r"notes\.h5: is not a Keras \.h5 weights file of the resnet18 backbone"):
        build_model(small("hybrid", encoder_weights=str(bad)))
    with pytest.raises(InputError, match=r"missing\.h5: encoder weights file not found"):
        build_model(small("hybrid", encoder_weights=str(tmp_path / "missing.h5")))

