"""`lesionlens export`: the ONNX graph matches PyTorch, CAMs match Grad-CAM, INT8 is measured."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from lesionlens.bundle.card import BundleError, read_card
from lesionlens.data.images import normalize, preprocess_image
from lesionlens.export.check import ExportError
from lesionlens.export.onnx import export_bundle
from lesionlens.inference import load_model
from lesionlens.serving.runtime import BundleModel


def test_export_records_a_passed_check_in_the_card(exported_bundle):
    card = json.loads((exported_bundle / "card.json").read_text())
    onnx = card["onnx"]
    assert onnx["outputs"] == ["logits", "features"]
    assert onnx["check"]["max_abs_prob_diff"] <= 1e-4
    assert "val partition" in onnx["check"]["images"]
    assert onnx["cam"]["gradcam_check"]["compared"] > 0
    assert onnx["cam"]["gradcam_check"]["min_correlation"] > 0.99
    assert read_card(exported_bundle).data["weights"]["sha256"]  # the card still reads and verifies


def test_onnx_matches_pytorch_at_several_batch_sizes(exported_bundle):
    card = read_card(exported_bundle)
    model = load_model(card)
    session = ort.InferenceSession(str(exported_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    files = sorted((exported_bundle.parent / "images").rglob("*.jpg"))[:7]
    x = normalize(np.stack([preprocess_image(f, card.preprocessing) for f in files]), card.preprocessing)
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
    for n in (1, 3, 7):  # the batch dimension is dynamic
        logits, features = session.run(None, {"image": x[:n]})
        got = np.exp(logits - logits.max(1, keepdims=True))
        got /= got.sum(1, keepdims=True)
        assert np.abs(got - expected[:n]).max() <= 1e-4
        assert features.shape[0] == n


def test_export_without_images_says_what_to_do(bundle_copy):
    (bundle_copy / "split.csv").write_text("image_id,partition,label,group,sha256,path\n")
    with pytest.raises(ExportError, match="--images"):
        export_bundle(bundle_copy)


def test_int8_is_measured_and_only_used_when_asked(bundle_copy):
    record = export_bundle(bundle_copy, int8=True)
    q = record.int8
    assert (bundle_copy / q.file).is_file()
    assert q.batch1_latency_ms["fp32"] > 0 and q.batch1_latency_ms["int8"] > 0
    assert 0 <= q.top1_agreement <= 1 and q.accuracy_change is not None
    assert BundleModel(bundle_copy).runtime.endswith("(fp32)")
    assert BundleModel(bundle_copy, int8=True).runtime.endswith("(int8)")


def test_a_changed_onnx_file_is_refused(bundle_copy):
    with open(bundle_copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="sha256"):
        BundleModel(bundle_copy)


def test_a_bundle_never_exported_is_refused_with_the_command_to_run(bundle_copy):
    card = json.loads((bundle_copy / "card.json").read_text())
    del card["onnx"]
    (bundle_copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="lesionlens export"):
        BundleModel(bundle_copy)
