"""``lesionlens export``: a bundle's network as ONNX for the torch-free server, checked against
PyTorch on real images (:mod:`lesionlens.export.onnx`), with an optional INT8 version whose cost and
gain are measured (:mod:`lesionlens.export.quantize`)."""
