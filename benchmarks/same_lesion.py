"""Candidate same-lesion pairs on real data, for review: ImageNet embeddings (mutual nearest
neighbours above lesionlens.quality.duplicates.EMBEDDING_THRESHOLD) plus the hash copies, through
the library's whole check. Prints the number of pairs with different group ids per 1,000 images
(HAM10000) or across partitions (ISIC 2017), writes the check's report.html and a PNG of the
closest pairs to look at.

    PYTHONPATH=src python benchmarks/same_lesion.py --data ../shared/data/ham10000 --weights ../shared/weights \
        --out checks/ham-same-lesion --embeddings checks/ham-emb.npy
    PYTHONPATH=src python benchmarks/same_lesion.py --data ../shared/data/isic2017 --weights ../shared/weights \
        --out checks/isic2017-same-lesion
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lesionlens.data.load import read_table
from lesionlens.quality.check import check_images
from lesionlens.quality.duplicates import EMBEDDING_THRESHOLD
from lesionlens.quality.embeddings import embed_table
from lesionlens.quality.report import write_check_report
from lesionlens.quality.result import summary_lines, text


def pairs_png(result, kind: str, path: Path, count: int = 24, side: int = 150) -> list[str]:
    """The ``count`` highest-scoring pairs of ``kind`` side by side in one PNG; their ids."""
    frame = result.table.frame
    found = sorted(result.of_kind(kind), key=lambda f: -(f.score or 0))[:count]
    sheet = Image.new("RGB", (4 * side + 20, (side + 16) * ((len(found) + 1) // 2)), "white")
    draw = ImageDraw.Draw(sheet)
    names = []
    for k, f in enumerate(found):
        x, y = (k % 2) * (2 * side + 20), (k // 2) * (side + 16)
        for j, pos in enumerate((f.a, f.b)):
            with Image.open(frame["path"].iat[pos]) as img:
                sheet.paste(img.convert("RGB").resize((side, side)), (x + j * side, y))
        name = f"{frame['image_id'].iat[f.a]} {frame['image_id'].iat[f.b]} {f.score:.3f}"
        draw.text((x + 2, y + side + 2), name, fill="black")
        names.append(name)
    sheet.save(path)
    return names


def cached_embeddings(table, weights: Path, path: Path | None) -> np.ndarray:
    """ImageNet embeddings of ``table``: read from ``path`` (.npy) when it exists, else computed and
    written there, so several benchmarks pay for them once."""
    if path and path.is_file():
        return np.load(path)
    emb, _ = embed_table(table, weights=weights, progress=False)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, emb)
    return emb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--embeddings", type=Path, help="npy file: read if present, else written")
    args = ap.parse_args()
    started = time.perf_counter()
    table = read_table(args.data)
    emb = cached_embeddings(table, args.weights, args.embeddings)
    result = check_images(table, emb, "ImageNet efficientnet_lite0", label_errors=False)
    html, csv = write_check_report(result, args.out)
    print("\n".join(summary_lines(result)))
    frame = result.table.frame
    pairs = result.of_kind("same_lesion") + result.of_kind("near_duplicate") + result.of_kind("exact_duplicate")
    other_group = [f for f in pairs if text(frame["group"].iat[f.a]) != text(frame["group"].iat[f.b])
                   or not text(frame["group"].iat[f.a])]
    n = len(table)
    print(f"\n{n} images; embedding threshold {EMBEDDING_THRESHOLD}; pairs for review with different (or no) "
          f"group ids: {len(other_group)} ({1000 * len(other_group) / n:.1f} per 1,000 images)")
    if table.has_partitions():
        across = result.of_kind("leakage")
        print(f"pairs across partitions: {len(across)}; by evidence: "
              + ", ".join(f"{c} {sum(f.code == c for f in across)}" for c in sorted({f.code for f in across})))
        for f in sorted(across, key=lambda f: -(f.score or 0))[:10]:
            print(f"  {frame['image_id'].iat[f.a]} ({frame['partition'].iat[f.a]}) - {frame['image_id'].iat[f.b]} "
                  f"({frame['partition'].iat[f.b]}): {f.reason} {f.score}")
    names = pairs_png(result, "same_lesion", args.out / "closest_pairs.png")
    print(f"closest pairs (see {args.out / 'closest_pairs.png'}):\n  " + "\n  ".join(names[:12]))
    print(f"report {html}, findings {csv}; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
