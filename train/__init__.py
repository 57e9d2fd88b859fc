"""Model blocks, the three model variants, losses, metrics, fit/resume.

Importing this package is cheap: TensorFlow, tf-keras and segmentation_models are
loaded by :func:`segkit.train.backend.load` when a command first needs them.

Modules
-------
``backend``   the one way TensorFlow / tf-keras / segmentation_models are imported
``config``    presets ``paper`` and ``cpu-small``, YAML, overrides (schemas/train-config.schema.json)
``blocks``    SE, CBAM, efficient attention gate, ResNeXt block, Transformer bottleneck, seeded dropout
``model``     ``build_model(config)`` for ``unet`` / ``unet_transformer`` / ``hybrid`` + ablation switches
``losses``    BCE + λ·soft Dice (paper eqs. 2–3); Dice / IoU / precision / recall from pixel counts
``fit``       ``train_run``: the training loop, checkpoints, exact resume, ``--max-time``, TensorBoard logs
``rundir``    the run directory's other files: the check before a run, history, curves, provenance, the model

Choices where the paper is silent (all in the config, so they are recorded in every run)
-----------------------------------------------------------------------------------------
* Encoder: segmentation_models' backbone up to its stride-16 stage (``stage4_unit1_relu1`` for
  ResNets: 32²×1024 at 512² with ResNet-50), so the bottleneck sees the paper's 1,024 tokens of width
  1,024.  ResNet-50's last stage (stride 32, 2048 channels) is not part of ``unet_transformer`` /
  ``hybrid``; ``unet`` is ``sm.Unet`` unchanged (five decoder stages from stride 32).
* Bottleneck: a *learned* positional embedding (one 1,024-vector per token), 4 **pre-norm** blocks of
  8-head self-attention + feed-forward (hidden 1,024, **GELU**), dropout 0.1 on the attention
  probabilities, after attention, inside and after the feed-forward; a final LayerNorm.
* Skips: each encoder stage goes through SE then CBAM (that CBAM is the skip's refinement); the
  attention gate's gating signal is the upsampled decoder map at the skip's resolution, with
  ``filters // 2`` intermediate channels.  Decoder block: upsample ×2 → gate(skip) → concat →
  Conv3×3-BN-ReLU → SE → ResNeXt (1×1 reduce to half, depthwise 3×3, 1×1 expand, projected shortcut
  when the width changes, ReLU).  Output: 1×1 conv + sigmoid.  Decoder widths (128, 64, 32, 16) at
  strides 8, 4, 2, 1: the widths ``sm.Unet`` uses at those resolutions, so the variants differ in their
  blocks, not in decoder width (``benchmarks/train_step.py``: hybrid 1.38× ``unet`` per step at 128²).
* Input: grey slices in [0, 1] are repeated to 3 channels and scaled to 0–255, then passed through
  ``sm.get_preprocessing(backbone)`` (identity for ResNets, whose first layer normalises).
* Loss per slice, averaged over the batch; ε = 1; λ = 1 (the paper does not give its value).
  Metrics are micro-averaged over an epoch / the whole val split at threshold ½.
"""
