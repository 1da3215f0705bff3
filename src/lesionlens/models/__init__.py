"""The model registry (``create_model``), model families and pretrained-weight sources."""
