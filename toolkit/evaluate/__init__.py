"""Evaluation without TensorFlow: metrics on masks, per-patient tables, reports and overlays.

Takes predicted and true masks (from `segkit.train.evaluate`); gives metrics.json, CSV tables,
Markdown reports and PNG overlays.
"""
