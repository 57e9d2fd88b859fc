"""Multi-step workflows that chain toolkit steps: the demo, and (later) the tf.data input pipeline."""
