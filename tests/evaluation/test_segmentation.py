"""Segmentation metrics on hand-made masks whose answers are known, HD95 against MONAI as an outside
oracle, the paired comparison, and the report (every figure a decodable PNG)."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from lesionlens.evaluation.segmentation import compare_segmentations, evaluate_segmentation, hd95
from lesionlens.evaluation.segmentation_report import write_segmentation_report


def _disc(radius: float, size: int = 100, centre: tuple[float, float] = (50.0, 50.0)) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.hypot(yy - centre[0], xx - centre[1]) <= radius


def _run(k: int, length: int = 10, width: int = 12) -> np.ndarray:
    """The first ``k`` pixels of one row of ``length``: against the full row its Jaccard is k / length."""
    m = np.zeros((width, width), bool)
    m[3, :k] = True
    return m


def _blobs(rng: np.random.Generator, n: int, size: int = 96) -> np.ndarray:
    """Smooth random lesion-like blobs (thresholded smoothed noise plus a central bump)."""
    yy, xx = np.mgrid[:size, :size]
    bump = -np.hypot(yy - size / 2, xx - size / 2) / size
    noise = ndimage.gaussian_filter(rng.normal(size=(n, size, size)), (0, 6, 6))
    return noise * 25 + bump * 4 > -1.0


def test_two_squares_with_a_known_overlap():
    truth, pred = np.zeros((1, 20, 20), bool), np.zeros((1, 20, 20), bool)
    truth[0, 0:10, 0:10] = True  # 100 pixels
    pred[0, 5:15, 0:10] = True  # 100 pixels, 50 of them shared
    ev = evaluate_segmentation(truth, pred)
    assert ev.jaccard[0] == pytest.approx(50 / 150)
    assert ev.dice[0] == pytest.approx(2 * 50 / 200)
    assert ev.summary["mean_jaccard"].estimate == pytest.approx(1 / 3)
    assert ev.summary["failure_share"].estimate == 1.0


def test_hd95_of_concentric_discs_is_the_radius_difference():
    truth, pred = _disc(20), _disc(30)
    assert hd95(truth, pred) == pytest.approx(10, abs=1)
    assert hd95(pred, truth) == hd95(truth, pred)  # symmetric
    assert hd95(truth, pred, mm_per_pixel=0.1) == pytest.approx(0.1 * hd95(truth, pred))
    assert hd95(truth, truth) == 0.0
    ev = evaluate_segmentation(truth[None], pred[None], mm_per_pixel=0.1)
    assert ev.unit == "mm" and ev.hd95[0] == pytest.approx(1.0, abs=0.1)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI's own deprecation notices
def test_hd95_agrees_with_monai_on_random_blobs():
    """MONAI's surface distances give exactly our definition (the 95th percentile of both directions'
    distances together). Its compute_hausdorff_distance takes the larger of the two directed 95th
    percentiles instead: never below ours, and equal within 1 px only where both directions agree
    (concentric discs); on these blobs it lies up to ~4 px above, and ours between the two directed
    figures."""
    monai_utils = pytest.importorskip("monai.metrics.utils")
    from monai.metrics import compute_hausdorff_distance

    rng = np.random.default_rng(3)
    truth = _blobs(rng, 6)
    pred = truth.copy()
    pred[:3] = ndimage.binary_dilation(truth[:3], iterations=3) & ~_blobs(rng, 3)
    pred[3:] = _blobs(rng, 3) | ndimage.binary_erosion(truth[3:], iterations=2)
    assert truth.reshape(6, -1).any(axis=1).all() and pred.reshape(6, -1).any(axis=1).all()
    ours = np.array([hd95(t, p) for t, p in zip(truth, pred)])
    import torch

    for t, p, value in zip(truth, pred, ours):
        _, distances, _ = monai_utils.get_edge_surface_distance(torch.as_tensor(p), torch.as_tensor(t), symmetric=True)
        directed = [d.numpy() for d in distances]
        assert value == pytest.approx(np.percentile(np.concatenate(directed), 95), abs=1e-4)
        low, high = sorted(np.percentile(d, 95) for d in directed)
        assert low - 1e-4 <= value <= high + 1e-4
    assert ours.min() > 0 and len(set(np.round(ours, 3))) > 3  # the blobs differ: not a trivial agreement

    def monai_hd95(truth, pred):
        return compute_hausdorff_distance(torch.as_tensor(pred[:, None]), torch.as_tensor(truth[:, None]),
                                          include_background=True, percentile=95).numpy()[:, 0]

    assert (monai_hd95(truth, pred) >= ours - 1e-4).all()
    discs = np.stack([_disc(20), _disc(25, centre=(48.0, 53.0))]), np.stack([_disc(30), _disc(22)])
    assert monai_hd95(*discs) == pytest.approx([hd95(t, p) for t, p in zip(*discs)], abs=1.0)


def test_pooled_and_per_image_jaccard_differ_when_lesion_sizes_differ():
    big, small = np.zeros((2, 40, 40), bool), np.zeros((2, 40, 40), bool)
    big[0, :25, :40] = True  # 1,000 pixels, found exactly
    small[1, 0, :10] = True  # 10 pixels, missed entirely
    truth = big | small
    pred = big.copy()
    pred[1, 30, :10] = True  # 10 pixels elsewhere
    ev = evaluate_segmentation(truth, pred)
    assert ev.summary["mean_jaccard"].estimate == pytest.approx(0.5)
    assert ev.summary["pooled_jaccard"].estimate == pytest.approx(1000 / 1020)


def test_thresholded_jaccard_and_failure_share_by_hand():
    ks = [10, 7, 5, 6, 9]  # Jaccard 1.0, 0.7, 0.5, 0.6, 0.9 against the full row
    truth = np.stack([_run(10)] * len(ks))
    pred = np.stack([_run(k) for k in ks])
    ev = evaluate_segmentation(truth, pred, [f"img{i}" for i in range(len(ks))])
    assert ev.jaccard == pytest.approx([1.0, 0.7, 0.5, 0.6, 0.9])
    assert ev.summary["thresholded_jaccard"].estimate == pytest.approx((1.0 + 0.7 + 0.9) / 5)
    assert ev.summary["failure_share"].estimate == pytest.approx(2 / 5)
    assert [w["image_id"] for w in ev.worst(3)] == ["img2", "img3", "img1"]
    assert ev.worst(1)[0]["jaccard"] == pytest.approx(0.5)


def test_empty_mask_conventions_are_counted_and_kept_in_the_jaccard_mean():
    empty = np.zeros((30, 30), bool)
    square = empty.copy()
    square[5:15, 5:15] = True
    truth = np.stack([empty, empty, square, square])
    pred = np.stack([empty, square, empty, square])
    ev = evaluate_segmentation(truth, pred, ["none", "false_alarm", "missed", "perfect"])
    assert list(ev.jaccard) == [1.0, 0.0, 0.0, 1.0]
    assert list(ev.dice) == [1.0, 0.0, 0.0, 1.0]
    assert ev.hd95[0] == 0.0 and math.isnan(ev.hd95[1]) and math.isnan(ev.hd95[2]) and ev.hd95[3] == 0.0
    assert ev.counts == {"images": 4, "both_empty": 1, "hd95_undefined": 2, "failures": 2}
    assert ev.summary["mean_jaccard"].estimate == 0.5  # the undefined-HD95 images still count, as 0
    assert ev.summary["mean_hd95"].estimate == 0.0  # over the two images where it is defined
    assert ev.notes() == ["both empty", "truth empty", "prediction empty", ""]
    data = ev.to_dict()
    json.dumps(data, allow_nan=False)  # undefined figures are None, not NaN
    assert data["worst"][0]["hd95"] is None
    assert any("HD95 undefined for 2 image(s)" in line for line in ev.lines())


def test_intervals_are_seeded_and_contain_the_estimate():
    rng = np.random.default_rng(0)
    truth = _blobs(rng, 12, size=48)
    pred = ndimage.binary_dilation(truth, structure=np.ones((1, 3, 3)), iterations=2)
    a = evaluate_segmentation(truth, pred, n_resamples=300, seed=5)
    b = evaluate_segmentation(truth, pred, n_resamples=300, seed=5)
    for name, interval in a.summary.items():
        assert interval == b.summary[name]
        assert interval.low <= interval.estimate <= interval.high, name
    assert a.summary["mean_jaccard"].high > a.summary["mean_jaccard"].low  # the images differ
    same = evaluate_segmentation(np.stack([_run(10)] * 4), np.stack([_run(7)] * 4))
    assert same.summary["mean_jaccard"].low == same.summary["mean_jaccard"].high == pytest.approx(0.7)


def test_probabilities_are_thresholded_and_bad_masks_are_refused_by_image_id():
    truth = np.stack([_run(10)] * 2)
    probs = np.where(np.stack([_run(5), _run(10)]), 0.5, 0.49)  # 0.5 is lesion, 0.49 is not
    ev = evaluate_segmentation(truth, probs, ["a", "b"])
    assert ev.jaccard == pytest.approx([0.5, 1.0])
    everything = evaluate_segmentation(truth, probs, threshold=0.4)  # every pixel is lesion
    assert everything.jaccard == pytest.approx([10 / 144, 10 / 144])
    assert evaluate_segmentation(truth.astype(np.uint8), truth.astype(np.int64)).jaccard == pytest.approx([1, 1])

    with pytest.raises(ValueError, match=r"true mask of image 'b' holds values other than 0 and 1: 255.*by 255"):
        evaluate_segmentation(np.stack([_run(10), _run(10) * 255]).astype(np.uint8), truth, ["a", "b"])
    bad = probs.copy()
    bad[1, 0, 0] = 1.5
    with pytest.raises(ValueError, match=r"predicted mask of image 'b' holds values that are not probabilities"):
        evaluate_segmentation(truth, bad, ["a", "b"])
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"image 'b'.*nan"):
        evaluate_segmentation(truth, bad, ["a", "b"])
    with pytest.raises(ValueError, match=r"must both be N x H x W"):
        evaluate_segmentation(truth, truth[:, :5])
    with pytest.raises(ValueError, match=r"repeated: a"):
        evaluate_segmentation(truth, truth, ["a", "a"])
    with pytest.raises(ValueError, match=r"2 image ids for 3 masks"):
        evaluate_segmentation(np.stack([_run(1)] * 3), np.stack([_run(1)] * 3), ["a", "b"])


def test_paired_comparison_finds_the_better_model_and_matches_images_by_id():
    rng = np.random.default_rng(1)
    truth = _blobs(rng, 16, size=48)
    ids = [f"ISIC_{i:07d}" for i in range(16)]
    worse = evaluate_segmentation(truth, ndimage.binary_dilation(truth, np.ones((1, 3, 3)), iterations=4), ids)
    order = rng.permutation(16)  # B holds the same images in another order
    better = evaluate_segmentation(truth[order], ndimage.binary_dilation(truth[order], np.ones((1, 3, 3))),
                                   [ids[i] for i in order])
    d = compare_segmentations(worse, better, n_resamples=500)
    assert d.a == pytest.approx(worse.jaccard.mean()) and d.b == pytest.approx(better.jaccard.mean())
    assert d.interval.estimate == pytest.approx(better.jaccard.mean() - worse.jaccard.mean())
    assert d.interval.low > 0 and d.p_value < 0.01 and "paired bootstrap" in d.method
    assert compare_segmentations(worse, better, "hd95", n_resamples=200).interval.high < 0  # lower is better
    same = compare_segmentations(worse, worse, n_resamples=200)
    assert same.interval.estimate == 0 and same.p_value == 1.0

    other = evaluate_segmentation(truth, truth, ids[:15] + ["ISIC_9999999"])
    with pytest.raises(ValueError, match=r"1 image\(s\) only in A \(e.g. ISIC_0000015\), 1 only in B \(e.g. ISIC_99"):
        compare_segmentations(worse, other)
    with pytest.raises(ValueError, match="unknown per-image metric"):
        compare_segmentations(worse, better, "accuracy")


def test_report_embeds_every_figure_as_a_decodable_png(tmp_path):
    rng = np.random.default_rng(2)
    truth = _blobs(rng, 6, size=64)
    pred = ndimage.binary_dilation(truth, np.ones((1, 3, 3)), iterations=3)
    pred[5] = False  # one missed lesion: HD95 undefined
    ids = [f"ISIC_{i:07d}" for i in range(6)]
    ev = evaluate_segmentation(truth, pred, ids, description="toy blobs", n_resamples=200)
    images = rng.integers(0, 256, size=(6, 64, 64, 3), dtype=np.uint8)
    files = write_segmentation_report(ev, images, tmp_path / "report", k=4)
    assert {p.name for p in files.values()} == {"segmentation.json", "per_image.csv", "jaccard_histogram.png",
                                                 "worst_masks.png", "report.html"}
    html = files["html"].read_text()
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(uris) == 2
    for uri in uris:
        with Image.open(io.BytesIO(base64.b64decode(uri))) as im:
            im.load()
            assert im.format == "PNG" and im.size[0] > 300
    assert "ISIC_0000005" in html and "undefined" in html and "pooled Jaccard" in html
    saved = json.loads(files["json"].read_text())
    assert saved["summary"]["mean_jaccard"]["estimate"] == pytest.approx(ev.jaccard.mean())
    with files["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert [r["image_id"] for r in rows] == ids
    assert rows[5]["hd95_px"] == "" and rows[5]["note"] == "prediction empty" and rows[5]["failure"] == "True"
    with pytest.raises(ValueError, match=r"uint8 of shape \(6, 64, 64, 3\)"):
        write_segmentation_report(ev, images[:5], tmp_path / "bad")
