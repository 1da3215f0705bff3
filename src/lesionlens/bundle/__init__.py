"""The model bundle: the folder a training run writes and every later command reads.

    model.safetensors   the weights (never pickle)
    card.json           what the bundle is (:mod:`lesionlens.bundle.card`: one typed schema, one
                        reader, one writer)
    config.yaml         the full run configuration (``lesionlens train --config`` reads it back)
    split.csv           every image with its partition, label and content hash
                        (:mod:`lesionlens.bundle.split`)
    evaluation/         metrics.json and the figures of the validation split
    learning_curves.png, logs/metrics.csv, checkpoints/ (for --resume)
    model.onnx, cam_head.npz, model.int8.onnx   written by ``lesionlens export``

Torch-free, so the server can read a card without PyTorch. Import from the modules:
``from lesionlens.bundle.card import read_card``.
"""
