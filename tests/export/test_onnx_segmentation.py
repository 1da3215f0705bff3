"""`lesionlens export` on segmentation and multi-task bundles: mask logits (and class logits) in the
graph, every pixel's probability within 1e-4 of PyTorch's and the cleaned-up masks identical, or
nothing is written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from lesionlens.bundle.card import read_card
from lesionlens.bundle.schema import SegmentationInfo
from lesionlens.data.images import normalize, preprocess_image
from lesionlens.evaluation.mask_ops import mask_probabilities, postprocess_mask
from lesionlens.export import onnx as onnx_export
from lesionlens.export.check import ExportError
from lesionlens.export.onnx import describe_export, export_bundle
from lesionlens.export.parity import check_masks
from lesionlens.inference import load_model
from lesionlens.serving.runtime import BundleModel

SEG = SegmentationInfo(threshold=0.5, keep_largest=True, loss="ce_dice", upsample="resize", decoder_width=16)


def test_export_records_the_pixel_and_mask_check(segmentation_bundle):
    card = json.loads((segmentation_bundle / "card.json").read_text())
    onnx, split = card["onnx"], (segmentation_bundle / "split.csv").read_text().splitlines()
    assert onnx["outputs"] == ["mask_logits"] and onnx["cam"] is None
    check = onnx["check"]
    assert check["max_abs_mask_prob_diff"] <= 1e-4 and check["mask_pixels_differing"] == 0
    validation = sum(",val," in line for line in split)
    assert "val partition" in check["images"] and check["mask_pixels"] == validation * 32 * 32
    assert (check["mask_threshold"], check["keep_largest"]) == (0.5, True)
    text = "\n".join(describe_export(read_card(segmentation_bundle).onnx, segmentation_bundle))
    assert "masks after thresholding at 0.5 and the clean-up identical except at ties (0 of " in text


def test_onnx_masks_match_pytorch_at_several_batch_sizes(segmentation_bundle):
    card = read_card(segmentation_bundle)
    session = ort.InferenceSession(str(segmentation_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    files = sorted((segmentation_bundle.parent / "pairs" / "images").glob("*.jpg"))[:5]
    x = normalize(np.stack([preprocess_image(f, card.preprocessing) for f in files]), card.preprocessing)
    with torch.inference_mode():
        expected = mask_probabilities(load_model(card)(torch.from_numpy(x)).numpy())
    for n in (1, 2, 5):  # the batch dimension is dynamic
        (logits,) = session.run(["mask_logits"], {"image": x[:n]})
        assert logits.shape == (n, 1, 32, 32)
        got = mask_probabilities(logits)
        assert np.abs(got - expected[:n]).max() <= 1e-4
        assert np.array_equal(postprocess_mask(got), postprocess_mask(expected[:n]))
    assert postprocess_mask(expected).any(axis=(1, 2)).all()  # it found the lesions: a real comparison


def test_a_multitask_graph_has_both_heads_and_both_checks(multitask_bundle):
    info = read_card(multitask_bundle).onnx
    assert info.outputs == ["mask_logits", "logits"]
    assert info.check["max_abs_prob_diff"] <= 1e-4 and info.check["max_abs_mask_prob_diff"] <= 1e-4
    model = BundleModel(multitask_bundle)
    assert model.heads == ["classification", "segmentation"]
    out = model.run(np.zeros((3, 3, 32, 32), np.float32))
    assert out.logits.shape == (3, 2) and out.masks.shape == (3, 1, 32, 32) and out.features is None


def test_a_failed_check_writes_nothing(segmentation_bundle, tmp_path, monkeypatch):
    bundle = shutil.copytree(segmentation_bundle, tmp_path / "bundle")
    card_before, onnx_before = (bundle / "card.json").read_text(), (bundle / "model.onnx").read_bytes()
    real = onnx_export._run_batches

    def off_by_a_little(session, x):  # as if the runtime computed the decoder differently
        return [out + 0.01 for out in real(session, x)]

    monkeypatch.setattr(onnx_export, "_run_batches", off_by_a_little)
    with pytest.raises(ExportError, match=r"lesion probabilities differ from PyTorch's by up to .*nothing was written"):
        export_bundle(bundle)
    assert (bundle / "card.json").read_text() == card_before
    assert (bundle / "model.onnx").read_bytes() == onnx_before


def test_masks_may_differ_only_at_ties_with_the_threshold():
    torch_logits = np.full((2, 1, 16, 16), -6.0, np.float32)
    torch_logits[:, :, 4:10, 4:10] = 6.0
    torch_logits[1, 0, 10, 6] = 2e-5  # a pixel on the lesion's edge, just above the threshold
    onnx_logits = torch_logits.copy()
    check = check_masks(onnx_logits, torch_logits, SEG, "two images")
    assert check["mask_pixels_differing"] == 0 and check["mask_pixels_at_threshold"] == 1
    onnx_logits[1, 0, 10, 6] = -2e-5  # 1e-5 away in probability, within the tolerance: a tie, rounding decides
    check = check_masks(onnx_logits, torch_logits, SEG, "two images")
    assert check["mask_pixels_differing"] == 1 and check["mask_pixels_at_threshold"] == 1


def test_a_tie_that_changes_the_clean_up_is_refused():
    torch_logits = np.full((1, 1, 16, 16), -6.0, np.float32)
    torch_logits[0, 0, 2:8, 2:8] = 6.0    # 36 pixels
    torch_logits[0, 0, 9:14, 2:9] = 6.0   # 35 pixels, one row below: kept only if the tie joins them
    torch_logits[0, 0, 8, 4] = 2e-5       # the bridge, on the threshold
    onnx_logits = torch_logits.copy()
    onnx_logits[0, 0, 8, 4] = -2e-5
    with pytest.raises(ExportError, match=r"differ from PyTorch's in 35 pixels of 1 image\(s\) \(first: #0 of one image\)"
                                          r".*a tie at the threshold changed the clean-up"):
        check_masks(onnx_logits, torch_logits, SEG, "one image")


def test_int8_is_refused_for_a_mask_head(segmentation_bundle, tmp_path):
    bundle = shutil.copytree(segmentation_bundle, tmp_path / "bundle")
    with pytest.raises(ExportError, match="--int8 is measured on class probabilities only"):
        export_bundle(bundle, int8=True)
