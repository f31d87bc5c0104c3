"""Floor 4: independent references that judge the engine: closed forms, the PyTorch oracle and the
verification report."""
