"""Floor 4: what is built on the engine: operator mode (lazy), per-sample gradients, curvature,
conversion between conventions, training and bundled data sets."""
