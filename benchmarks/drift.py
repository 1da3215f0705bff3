"""Drift monitoring measured: false alarms on in-distribution windows, detection of real and
synthetic shifts, and the smallest window that reaches 80% power, per test and overall.

    PYTHONPATH=src python benchmarks/drift.py --bundle runs/upkeep/champion-onnx \
        --isic ../shared/data/isic2017 --cache runs/drift-cache

Design. The bundle's validation images (its split file) are split by lesion into two halves: the
REFERENCE half makes the reference profile, whose thresholds are calibrated on windows drawn from
that half alone (each against the rest of the half); the POOL half is never seen by the calibration.
In-distribution windows are drawn from the pool half, and shifted windows from the pool half's
images after a synthetic shift (Gaussian blur sigma 2 at full resolution, brightness -30%, JPEG
quality 30), and from ISIC 2017 test (600 images: other clinics and cameras). Every window is tested
against the whole reference half, as a deployed monitor would be. Splitting by lesion keeps a
lesion's other photos out of the pool, so in-distribution windows are new lesions, not near-copies.
Each image's outputs are computed once (ONNX Runtime) and cached under --cache; windows are drawn
from them (without replacement within a window), so the benchmark costs minutes, not hours.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from lesionlens.bundle.split import read_split
from lesionlens.serving.runtime import BundleModel
from lesionlens.upkeep.drift import Sample
from lesionlens.upkeep.identity import BundleIdentity
from lesionlens.upkeep.outputs import ModelOutputs, compute_outputs
from lesionlens.upkeep.reference import profile_of
from lesionlens.upkeep.settings import ReferenceSettings

SIZES = (10, 20, 30, 50, 75, 100, 150, 200)
SHIFTS = {
    "blur": lambda img: img.filter(ImageFilter.GaussianBlur(2)),  # Pillow's radius is the standard deviation
    "dark": lambda img: ImageEnhance.Brightness(img).enhance(0.7),
    "jpeg30": lambda img: img,  # encoded at quality 30 below
}


def shifted_bytes(path: Path, shift: str) -> bytes:
    with Image.open(path) as f:
        img = SHIFTS[shift](f.convert("RGB"))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=30 if shift == "jpeg30" else 95)
    return out.getvalue()


def cached_outputs(cache: Path, name: str, model: BundleModel, sources, names) -> ModelOutputs:
    """Load the set's outputs from ``cache`` or compute and save them."""
    path = cache / f"{name}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            if list(f["names"]) == list(names):
                return ModelOutputs(f["probabilities"], f["embeddings"] if "embeddings" in f.files else None,
                                    f["flagged"])
    started = time.perf_counter()
    out = compute_outputs(model, sources, names)
    print(f"  {name}: {len(names)} images in {time.perf_counter() - started:.0f} s", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    extra = {} if out.embeddings is None else {"embeddings": out.embeddings}
    np.savez(path, names=np.array(names), probabilities=out.probabilities, flagged=out.flagged, **extra)
    return out


def halves(rows, seed: int) -> tuple[list, list]:
    """The validation rows split in two by lesion (group), about half the images each."""
    groups = sorted({r.group or r.image_id for r in rows})
    rng = np.random.default_rng(seed)
    chosen = set(rng.permutation(groups)[: len(groups) // 2].tolist())
    reference = [r for r in rows if (r.group or r.image_id) in chosen]
    return reference, [r for r in rows if (r.group or r.image_id) not in chosen]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True, help="an exported bundle (its split file names its validation images)")
    ap.add_argument("--isic", type=Path, default=Path("../shared/data/isic2017"))
    ap.add_argument("--cache", type=Path, default=Path("runs/drift-cache"))
    ap.add_argument("--windows", type=int, default=200, help="windows drawn per set and size")
    ap.add_argument("--draws", type=int, default=500, help="in-distribution windows the thresholds are calibrated on")
    ap.add_argument("--target", type=float, default=0.05, help="false-alarm rate the thresholds aim at")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--splits", type=int, default=10,
                    help="reference / pool splits (seeds) over which the false-alarm rate at N=200 is measured again")
    ap.add_argument("--compare-embedding-tests", type=int, default=20, metavar="WINDOWS",
                    help="windows of 50 per set on which MMD and a domain classifier are compared (0: skip)")
    args = ap.parse_args()

    identity = BundleIdentity.of(args.bundle)
    model = BundleModel(args.bundle, threads=args.threads)
    cache = args.cache / identity.digest[:16]
    rows = [r for r in read_split(args.bundle) if r.partition == "val"]
    ref_rows, pool_rows = halves(rows, args.seed)
    isic = sorted((args.isic / "ISIC-2017_Test_v2_Data").glob("ISIC_*.jpg"))
    print(f"bundle {identity}; validation {len(rows)} images: reference half {len(ref_rows)}, pool half "
          f"{len(pool_rows)} (split by lesion); ISIC 2017 test {len(isic)} images", flush=True)

    started = time.perf_counter()
    val = cached_outputs(cache, "ham-val", model, [Path(r.path) for r in rows], [r.image_id for r in rows])
    position = {r.image_id: i for i, r in enumerate(rows)}
    pool_paths = [Path(r.path) for r in pool_rows]
    pool_names = [r.image_id for r in pool_rows]
    sets: dict[str, ModelOutputs] = {"in-distribution": _take(val, [position[n] for n in pool_names])}
    sets["ISIC 2017 test"] = cached_outputs(cache, "isic2017-test", model, isic, [p.stem for p in isic])
    for shift in SHIFTS:
        sets[shift] = cached_outputs(cache, f"pool-{shift}", model, _Lazy(pool_paths, shift), pool_names)
    print(f"outputs ready in {time.perf_counter() - started:.0f} s", flush=True)

    reference = _take(val, [position[r.image_id] for r in ref_rows])
    started = time.perf_counter()
    sizes = [s for s in args.sizes if 2 * s <= len(reference)]
    profile = profile_of(identity, model.classes, f"reference half of {identity.name}'s validation images",
                         reference.probabilities, reference.embeddings, reference.flagged,
                         ReferenceSettings(tuple(sizes), args.target, args.draws, seed=args.seed))
    print(f"reference profile and thresholds for {len(sizes)} window sizes ({args.draws} in-distribution windows "
          f"each) in {time.perf_counter() - started:.0f} s", flush=True)
    print("\n".join(profile.summary_lines()))

    tests = profile.tests()
    names = list(tests.names)
    rates: dict[tuple[str, int], dict[str, float]] = {}
    timing = []
    for k, (set_name, out) in enumerate(sets.items()):
        sample = Sample(out.probabilities, None if out.embeddings is None else profile.projection(out.embeddings),
                        out.flagged)
        for size in sizes:
            c = profile.calibrations[size]
            rng = np.random.default_rng([args.seed, size, k])
            fired = np.zeros((args.windows, len(names)), dtype=bool)
            t = time.perf_counter()
            for i in range(args.windows):
                rows_i = rng.choice(len(sample), size, replace=False)
                results = tests.run(sample.take(rows_i), rng)
                fired[i] = [results[n].p_value < c.thresholds[n] for n in names]
            timing.append((size, (time.perf_counter() - t) / args.windows))
            rates[set_name, size] = {n: float(fired[:, k].mean()) for k, n in enumerate(names)} | {
                "overall": float(fired.any(axis=1).mean())}
        print(f"  {set_name}: done", flush=True)

    print(f"\nShare of {args.windows} windows flagged (overall rule: any test below its calibrated threshold; "
          f"target false-alarm rate {args.target:.0%})")
    print(f"{'set':<18}" + "".join(f"{'N=' + str(s):>8}" for s in sizes) + "   smallest N with >= 80%")
    for set_name in sets:
        cells = "".join(f"{rates[set_name, s]['overall']:>8.1%}" for s in sizes)
        reach = next((s for s in sizes if rates[set_name, s]["overall"] >= 0.8), None)
        print(f"{set_name:<18}{cells}   {'-' if set_name == 'in-distribution' else (reach or 'none')}")
    for size in (200, 50) if 200 in sizes else sizes[-1:]:
        if size not in sizes:
            continue
        print(f"\nPer test, windows of {size} (thresholds: "
              + ", ".join(f"{n} p < {profile.calibrations[size].thresholds[n]:.3g}" for n in names) + ")")
        print(f"{'set':<18}" + "".join(f"{n:>12}" for n in names) + f"{'overall':>12}")
        for set_name in sets:
            r = rates[set_name, size]
            print(f"{set_name:<18}" + "".join(f"{r[n]:>12.1%}" for n in names) + f"{r['overall']:>12.1%}")
    print("\nSmallest window reaching 80% power, per test:")
    print(f"{'set':<18}" + "".join(f"{n:>12}" for n in names))
    for set_name in list(sets)[1:]:
        cells = [next((str(s) for s in sizes if rates[set_name, s][n] >= 0.8), "none") for n in names]
        print(f"{set_name:<18}" + "".join(f"{c:>12}" for c in cells))
    per_size = {}
    for size, t in timing:
        per_size.setdefault(size, []).append(t)
    print("\nCost of testing one window (all four tests, 500 permutations): "
          + ", ".join(f"N={s} {1000 * np.mean(v):.0f} ms" for s, v in per_size.items()))
    if args.splits and 200 in sizes:
        false_alarms_over_splits(val, rows, identity, model.classes, args)
    if args.compare_embedding_tests:
        compare_embedding_tests(profile, sets, args.compare_embedding_tests, args.seed)


def false_alarms_over_splits(val: ModelOutputs, rows, identity, classes, args) -> None:
    """The false-alarm rate at N=200 again for other reference / pool splits: the 200 windows of one
    split share its pool (each is a third of it), so one split's rate varies more than 200
    independent windows would; several splits show by how much."""
    print(f"\nFalse alarms at N=200 over {args.splits} reference / pool splits ({args.windows} windows each):")
    position = {r.image_id: i for i, r in enumerate(rows)}
    found = []
    for seed in range(args.splits):
        ref_rows, pool_rows = halves(rows, seed)
        ref = _take(val, [position[r.image_id] for r in ref_rows])
        pool = _take(val, [position[r.image_id] for r in pool_rows])
        profile = profile_of(identity, classes, f"split {seed}", ref.probabilities, ref.embeddings, ref.flagged,
                             ReferenceSettings((200,), args.target, args.draws, seed=seed))
        tests, c = profile.tests(), profile.calibrations[200]
        sample = Sample(pool.probabilities, profile.projection(pool.embeddings), pool.flagged)
        rng = np.random.default_rng([seed, 200])
        fired = []
        for _ in range(args.windows):
            results = tests.run(sample.take(rng.choice(len(sample), 200, replace=False)), rng)
            fired.append(any(results[n].p_value < c.thresholds[n] for n in c.thresholds))
        found.append(float(np.mean(fired)))
        print(f"  split {seed}: reference {len(ref_rows)}, pool {len(pool_rows)}: {found[-1]:.1%} "
              f"(calibration windows {c.false_alarms['any']:.1%})", flush=True)
    print(f"  mean {np.mean(found):.1%}, range {min(found):.1%}-{max(found):.1%}; "
          f"{sum(f <= 0.05 for f in found)} of {len(found)} splits at or below 5%")


def compare_embedding_tests(profile, sets: dict[str, ModelOutputs], windows: int, seed: int) -> None:
    """MMD with a permutation test against a domain classifier with a permutation test (logistic
    regression on the same principal components, its AUC on a held-out half of window + reference,
    100 permutations of the labels), each alone at p < 0.05, on windows of 50: power and cost."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    from lesionlens.upkeep.drift import gaussian_kernel, mmd_permutation

    ref = profile.sample.embeddings
    size, permutations = 50, 100

    def classifier_p(window: np.ndarray, rng: np.random.Generator) -> float:
        x = np.vstack([window, ref])
        y = np.r_[np.ones(len(window)), np.zeros(len(ref))]

        def auc(labels: np.ndarray) -> float:
            a, b, ya, yb = train_test_split(x, labels, test_size=0.5, stratify=labels, random_state=0)
            return roc_auc_score(yb, LogisticRegression(max_iter=300).fit(a, ya).decision_function(b))

        observed = auc(y)
        null = [auc(rng.permutation(y)) for _ in range(permutations)]
        return (1 + sum(a >= observed for a in null)) / (1 + permutations)

    print(f"\nEmbedding tests compared alone at p < 0.05, {windows} windows of {size} per set "
          f"(MMD: {profile.permutations} permutations; domain classifier: {permutations} permutations):")
    print(f"{'set':<18}{'MMD':>10}{'classifier':>12}{'MMD ms':>10}{'clf ms':>10}")
    for set_name in ("in-distribution", "dark", "jpeg30"):
        out = sets[set_name]
        emb = profile.projection(out.embeddings)
        rng = np.random.default_rng([seed, 7])
        mmd, clf, t_mmd, t_clf = [], [], 0.0, 0.0
        for _ in range(windows):
            w = emb[rng.choice(len(emb), size, replace=False)]
            t = time.perf_counter()
            pooled = np.vstack([w, ref])
            mmd.append(mmd_permutation(gaussian_kernel(pooled, pooled, profile.bandwidth), size,
                                       profile.permutations, rng)[1] < 0.05)
            t_mmd += time.perf_counter() - t
            t = time.perf_counter()
            clf.append(classifier_p(w, rng) < 0.05)
            t_clf += time.perf_counter() - t
        print(f"{set_name:<18}{np.mean(mmd):>10.1%}{np.mean(clf):>12.1%}{1000 * t_mmd / windows:>10.0f}"
              f"{1000 * t_clf / windows:>10.0f}", flush=True)


class _Lazy:
    """Shifted copies made as the model needs them (a list of encoded images, never all in memory)."""

    def __init__(self, paths: list[Path], shift: str):
        self.paths, self.shift = paths, shift

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [shifted_bytes(p, self.shift) for p in self.paths[index]]
        return shifted_bytes(self.paths[index], self.shift)


def _take(out: ModelOutputs, rows: list[int]) -> ModelOutputs:
    rows = np.asarray(rows)
    return ModelOutputs(out.probabilities[rows], None if out.embeddings is None else out.embeddings[rows],
                        out.flagged[rows])


if __name__ == "__main__":
    main()
