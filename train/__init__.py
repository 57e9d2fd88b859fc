"""Model blocks, the three model variants, losses, metrics, fit/resume, evaluate, predict.

Importing this package is cheap: TensorFlow, tf-keras and segmentation_models are
loaded by :func:`segkit.train.backend.load` when a command first needs them.
"""
