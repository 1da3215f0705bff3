"""ONNX export of volume bundles: the graph's outputs match PyTorch's on real volumes, the card
records the export, and the graph runs in ONNX Runtime on a preprocessed NIfTI file."""

from __future__ import annotations


import numpy as np
import pytest

from lesionlens.bundle.card import read_card
from lesionlens.cli import main
from lesionlens.config import load_config
from lesionlens.data.synthetic_volumes import write_synthetic_volumes
from lesionlens.data.volume_transforms import NO_AUGMENT
from lesionlens.data.volumes import VolumePreprocessing, preprocess_volume
from lesionlens.export.onnx_volumes import export_volume_bundle
from lesionlens.predict_volumes import VolumePredictor
from lesionlens.training.volume_fit import train_volumes

PRE = VolumePreprocessing((16, 16, 16), (3.0, 3.0, 3.0), "zscore")


def bundle(tmp_path, model):
    table = write_synthetic_volumes(tmp_path / "data", per_class=5, seed=0)
    cfg = load_config(None, {"data.path": str(table), "model.name": model, "model.pretrained": False,
                             "train.strategy": "scratch", "train.epochs": 1, "train.batch_size": 4})
    train_volumes(cfg, tmp_path / model, PRE, NO_AUGMENT, progress=False)
    return tmp_path / model, table


def test_a_3d_classifier_exports_and_matches_pytorch(tmp_path, one_thread, capsys):
    import onnxruntime as ort

    folder, table = bundle(tmp_path, "tiny_cnn3d")
    assert main(["export", str(folder)]) == 0
    assert "max |p_onnx - p_torch|" in capsys.readouterr().out
    card = read_card(folder)
    assert card.onnx.outputs == ["logits"] and card.onnx.input["shape"] == ["batch", 1, 16, 16, 16]
    assert card.onnx.check["max_abs_prob_diff"] <= 1e-4 and "val partition" in card.onnx.check["images"]
    volume = table.parent / "volumes" / "vol_0000.nii.gz"
    x = preprocess_volume(volume, card.preprocessing)[None, None]
    session = ort.InferenceSession(str(folder / card.onnx.file), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": np.concatenate([x, x, x])})  # any batch size
    expected = VolumePredictor(folder).predict([volume]).probabilities
    np.testing.assert_allclose(card.rule.probabilities(logits[:1]), expected, atol=1e-4)

    # the 2D server and the 2D model loader refuse the bundle by name, rather than fail on its shapes
    from lesionlens.bundle.schema import BundleError
    from lesionlens.inference import load_model
    from lesionlens.serving.runtime import BundleModel

    with pytest.raises(BundleError, match="a bundle for NIfTI volumes .*the server takes 2D images"):
        BundleModel(folder)
    with pytest.raises(BundleError, match="a bundle for NIfTI volumes .*this command takes 2D images"):
        load_model(card)


def test_a_3d_unet_exports_with_its_masks_checked_voxel_by_voxel(tmp_path, one_thread):
    folder, table = bundle(tmp_path, "tiny_unet3d")
    info = export_volume_bundle(folder, [table.parent / "volumes"], check_limit=3)
    assert info.outputs == ["mask_logits"]
    assert info.check["mask_voxels"] == 3 * 16 ** 3 and info.check["max_abs_mask_prob_diff"] <= 1e-4
    assert read_card(folder).onnx.sha256 == info.sha256
