"""``build_model(config)``: segmentation_models' U-Net, U-Net + Transformer, and the paper's hybrid.

The hybrid, read as a function of named blocks::

    backbone (segmentation_models) ─ four feature stages, strides 2, 4, 8, 16
      each stage → SE → CBAM                                   (switches: se, cbam)
      deepest stage (32²×1024 at 512² with ResNet-50) → Transformer bottleneck  (transformer)
    four decoder stages (32² → 64² → 128² → 256² → 512²), each:
      upsample ×2 → gate the refined skip with the upsampled map (attention_gate)
      → concat → Conv3×3-BN-ReLU → SE → ResNeXt block           (se; resnext, else Conv3×3-BN-ReLU)
    1×1 conv → sigmoid

With every switch off except ``transformer`` that is ``unet_transformer``: a
U-Net whose decoder blocks are segmentation_models' own (upsample, concat, two
Conv3×3-BN-ReLU) on the same four stages, plus the bottleneck.  ``unet`` is
``sm.Unet`` itself (five decoder stages from the stride-32 output).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segkit.errors import InputError, UsageError
from segkit.train.backend import load

__all__ = ["build_model", "build_backbone", "encoder_feature_layers", "imagenet_weights_path",
           "load_encoder_weights"]


def _model_section(config: dict[str, Any]) -> tuple[dict[str, Any], int]:
    if "model" in config:
        return config["model"], int(config.get("train", {}).get("seed", 0))
    return config, 0


def _submodules() -> dict[str, Any]:
    keras = load().keras
    return {"backend": keras.backend, "layers": keras.layers, "models": keras.models, "utils": keras.utils}


def build_backbone(name: str, input_size: int) -> Any:
    """segmentation_models' encoder ``name`` (no top, random weights) for ``input_size``² × 3 input.

    Raises
    ------
    UsageError
        If segmentation_models has no backbone of that name.
    """
    sm = load().sm
    if name not in sm.Backbones.models_names():
        raise UsageError("model.backbone", f"'{name}' is not a segmentation_models backbone; "
                                           "use e.g. resnet18, resnet34 or resnet50.")
    return sm.Backbones.get_backbone(name, input_shape=(input_size, input_size, 3), weights=None,
                                     include_top=False, **_submodules())


def encoder_feature_layers(name: str) -> tuple[str, ...]:
    """Names of the four encoder stages (deepest first) the decoder and bottleneck use."""
    return tuple(load().sm.Backbones.get_feature_layers(name, n=4))


def imagenet_weights_path(backbone: str) -> Path:
    """Where ``encoder_weights: imagenet`` looks for the backbone's no-top ImageNet file (Keras cache)."""
    from classification_models.weights import WEIGHTS_COLLECTION

    names = [w["name"] for w in WEIGHTS_COLLECTION
             if w["model"] == backbone and w["dataset"] == "imagenet" and not w["include_top"]]
    name = names[0] if names else f"{backbone}_imagenet_no_top.h5"
    return Path.home() / ".keras" / "models" / name


def _resolve_weights(spec: str | None, backbone: str) -> Path | None:
    if spec is None:
        return None
    if spec == "imagenet":
        path = imagenet_weights_path(backbone)
        if not path.is_file():
            raise InputError("--encoder-weights", (
                f"'imagenet' needs the {backbone} ImageNet weights as a local file (nothing is downloaded in the "
                f"enclave): copy {path.name} to {path.parent}/ or pass --encoder-weights PATH to a Keras .h5 file"))
        return path
    path = Path(spec)
    if not path.is_file():
        raise InputError(str(path), "encoder weights file not found; pass a Keras .h5 file of the backbone "
                                    "without top, or 'imagenet' with the file in the Keras cache.")
    return path


def load_encoder_weights(model: Any, backbone: str, input_size: int, path: Path) -> int:
    """Copy backbone weights from a Keras .h5 file into ``model``'s encoder layers (matched by name).

    Returns the number of layers loaded.

    Raises
    ------
    InputError
        If the file is not a weights file of this backbone without top.
    """
    reference = build_backbone(backbone, input_size)
    try:
        reference.load_weights(str(path))
    except Exception as exc:  # noqa: BLE001 - h5py/keras raise many types for a wrong file
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise InputError(str(path), f"is not a Keras .h5 weights file of the {backbone} backbone without top "
                                    f"({first}).") from None
    present = {layer.name: layer for layer in model.layers}
    loaded = 0
    for layer in reference.layers:
        # unet_transformer / hybrid stop at the stride-16 stage: deeper backbone layers are not in the model
        if layer.weights and layer.name in present:
            present[layer.name].set_weights(layer.get_weights())
            loaded += 1
    return loaded


def build_model(config: dict[str, Any]) -> Any:
    """Build the model a (resolved) config describes.

    Parameters
    ----------
    config:
        A resolved config (see :func:`segkit.train.config.load_config`) or just its
        ``model`` section.

    Returns
    -------
    tf_keras.Model
        Input ``(S, S, 3)`` float32, output ``(S, S, 1)`` sigmoid probabilities.

    Raises
    ------
    UsageError
        Unknown variant or backbone.
    InputError
        Encoder weights requested but not found or not matching the backbone.
    """
    model_cfg, seed = _model_section(config)
    B = load()
    keras, sm = B.keras, B.sm
    from segkit.train import blocks

    variant = model_cfg["variant"]
    name = model_cfg["backbone"]
    size = int(model_cfg["input_size"])
    weights = _resolve_weights(model_cfg.get("encoder_weights"), name)

    if variant == "unet":
        model = sm.Unet(name, input_shape=(size, size, 3), classes=1, activation="sigmoid",
                        encoder_weights=None)
        model._name = f"unet_{name}"
    elif variant in ("unet_transformer", "hybrid"):
        model = _build_skeleton(model_cfg, seed, keras, blocks, f"{variant}_{name}")
    else:
        raise UsageError("model.variant", f"unknown variant '{variant}'; choose unet, unet_transformer or hybrid.")
    if model_cfg.get("bn_momentum") is not None:
        for layer in model.submodules:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(model_cfg["bn_momentum"])
    if weights is not None:
        load_encoder_weights(model, name, size, weights)
    if model_cfg.get("output_prior") is not None:
        _set_output_prior(model, float(model_cfg["output_prior"]), keras)
    return model


def _set_output_prior(model: Any, prior: float, keras: Any) -> None:
    """Bias of the last (1-channel, sigmoid) convolution = logit(prior): every pixel starts at ``prior``."""
    import math

    final = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)][-1]
    kernel, bias = final.get_weights()
    final.set_weights([kernel, bias * 0 + math.log(prior / (1 - prior))])


def _build_skeleton(cfg: dict[str, Any], seed: int, keras: Any, blocks: Any, model_name: str) -> Any:
    L = keras.layers
    backbone = build_backbone(cfg["backbone"], int(cfg["input_size"]))
    stages = [backbone.get_layer(n).output for n in encoder_feature_layers(cfg["backbone"])]
    ratio = int(cfg["se_ratio"])

    gate_bias = float(cfg.get("gate_bias") or 0.0)

    def refine(t: Any, level: int) -> Any:
        if cfg["se"]:
            t = blocks.SqueezeExcite(ratio, gate_bias, name=f"encoder{level}_se")(t)
        if cfg["cbam"]:
            t = blocks.CBAM(ratio, gate_bias=gate_bias, name=f"encoder{level}_cbam")(t)
        return t

    deepest, skips = stages[0], stages[1:] + [None]
    x = refine(deepest, 4)
    if cfg["transformer"]:
        b = cfg["bottleneck"]
        x = blocks.TransformerBottleneck(b["depth"], b["heads"], b["hidden"], b["dropout"], b["activation"],
                                         seed=seed, name="bottleneck")(x)
    for stage, (filters, skip) in enumerate(zip(cfg["decoder_filters"], skips), start=1):
        x = L.UpSampling2D(2, name=f"decoder{stage}_upsample")(x)
        if skip is not None:
            skip = refine(skip, 4 - stage)
            if cfg["attention_gate"]:
                skip = blocks.EfficientAttentionGate(max(1, filters // 2), gate_bias, name=f"decoder{stage}_gate")([skip, x])
            x = L.Concatenate(name=f"decoder{stage}_concat")([x, skip])
        x = blocks.ConvBnReLU(filters, name=f"decoder{stage}_conv1")(x)
        if cfg["se"]:
            x = blocks.SqueezeExcite(ratio, gate_bias, name=f"decoder{stage}_se")(x)
        if cfg["resnext"]:
            x = blocks.ResNeXtBlock(filters, cfg["resnext_groups"], name=f"decoder{stage}_resnext")(x)
        else:
            x = blocks.ConvBnReLU(filters, name=f"decoder{stage}_conv2")(x)
    out = L.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="mask")(x)
    return keras.Model(backbone.input, out, name=model_name)
