"""``lesionlens export`` and ``serve``: a bundle as ONNX, served over HTTP without PyTorch (one bundle,
or a model registry's champion, followed as its aliases move)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lesionlens.serving.settings import ServeSettings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write the bundle's model as ONNX for the torch-free server",
        description="Write BUNDLE/model.onnx (dynamic batch; logits, plus the last feature maps for "
                    "class-activation maps where the head allows; a segmentation bundle's mask logits, a "
                    "multitask bundle's both) and check it against PyTorch on real images: the largest "
                    "probability difference, per class and per pixel, must be at most 1e-4, and the masks "
                    "after thresholding and clean-up identical. The check, the CAM vs Grad-CAM agreement and, "
                    "with --int8 (classifiers), the quantized model's measured accuracy change and speed-up "
                    "are written into the card.",
        epilog="examples:\n  lesionlens export runs/ham\n  lesionlens export runs/ham --images some_lesions/ --int8",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("--images", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER",
                   help="check on these images (default: the bundle's validation images from split.csv)")
    p.add_argument("--check-images", type=int, default=200, help="how many images to check on (default 200)")
    p.add_argument("--int8", action="store_true",
                   help="also write model.int8.onnx (static quantization) and report its accuracy and speed; "
                        "the server uses it only with `serve --int8`")
    p.set_defaults(run=_export, extra="train")

    d = ServeSettings()
    p = sub.add_parser(
        "serve", help="serve a bundle over HTTP (REST API and web page; torch-free)",
        description="Serve an exported bundle with FastAPI on uvicorn and ONNX Runtime (no PyTorch): "
                    "POST /v1/predict, POST /v1/predict/batch, POST /v1/explain, POST /v1/segment (segmentation "
                    "and multitask bundles: the lesion's mask, outline and measurements), GET /v1/model, /healthz, "
                    "/readyz, the web page at / and the OpenAPI docs at /docs. Run `lesionlens export "
                    "BUNDLE` once first.",
        epilog="examples:\n  lesionlens serve runs/ham --port 8000\n"
               "  curl -F file=@lesion.jpg http://127.0.0.1:8000/v1/predict\n"
               "  curl -F file=@lesion.jpg -F mm_per_pixel=0.03 http://127.0.0.1:8000/v1/segment   # a segmentation "
               "bundle\n"
               "  LESIONLENS_API_TOKEN=secret lesionlens serve runs/ham --host 0.0.0.0\n"
               "  lesionlens serve runs/ham --db cases.sqlite      # keep cases: POST /v1/cases, /label, /study\n"
               "  lesionlens serve --registry models/ --db cases.sqlite --shadow   # the champion; the challenger "
               "in shadow",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("bundle", type=Path, nargs="?", help="an exported bundle to serve")
    source.add_argument("--registry", type=Path, metavar="DIR",
                        help="serve this model registry's champion, and follow its aliases: a promotion or "
                             "rollback swaps the served model without a restart or a failed request "
                             "(classification bundles only)")
    p.add_argument("--shadow", action="store_true",
                   help="with --registry: the challenger also scores every request (never returned); its answers "
                        "are kept beside stored cases (--db) and counted in /v1/model")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=d.max_upload_bytes / 2**20,
                   help=f"largest accepted file (default {d.max_upload_bytes / 2**20:g} MB)")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels,
                   help=f"largest accepted width x height, checked before decoding (default {d.max_pixels:,})")
    p.add_argument("--max-batch-files", type=int, default=d.max_batch_files, help="files per batch request")
    p.add_argument("--batching", action=argparse.BooleanOptionalAction, default=d.batching,
                   help=f"group concurrent requests into one model call (default {'on' if d.batching else 'off'})")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size, help="images per model call")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help="how long a batch waits to fill (default %(default)s ms)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (default: the usable cores)")
    p.add_argument("--decode-workers", type=int, default=0, help="decoding threads (default: the usable cores)")
    p.add_argument("--int8", action="store_true", help="use model.int8.onnx from `lesionlens export --int8`")
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on /v1/* "
                                   "(default: $LESIONLENS_API_TOKEN; none when unset)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    cases = p.add_argument_group("case store (collect cases and labels; see `lesionlens cases --help`)")
    cases.add_argument("--db", help="keep cases in this database: a SQLite file path, or a URL such as "
                                    "postgresql+psycopg://user@host/name (default: keep nothing; /v1/cases, "
                                    "/label and /study are then off)")
    cases.add_argument("--case-images", help="folder for case photos (default: <db>.images beside a SQLite file; "
                                             "required for a server database)")
    cases.add_argument("--store-predictions", action="store_true",
                       help="also keep every /v1/predict image (as cases without research consent, never exported)")
    cases.add_argument("--monitor-reference", help="the bundle's reference profile (`lesionlens monitor reference`): "
                                                   "GET /v1/monitor and the /monitor page test the stored cases for drift")
    p.set_defaults(run=_serve, extra="serve")


def _export(args: argparse.Namespace) -> int:
    from lesionlens.bundle.card import read_card
    from lesionlens.export.onnx import describe_export, export_bundle

    if read_card(args.bundle, verify=False).is_volume:  # a 3D network: checked on NIfTI volumes
        from lesionlens.export.onnx_volumes import export_volume_bundle

        if args.int8:
            print("error: --int8 is measured on 2D images only; export this volume bundle without it", file=sys.stderr)
            return 2
        print("\n".join(describe_export(export_volume_bundle(args.bundle, args.images, args.check_images),
                                        args.bundle)))
        return 0
    print("\n".join(describe_export(export_bundle(args.bundle, args.images, args.check_images, int8=args.int8),
                                    args.bundle)))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from lesionlens.serving.app import create_app

    settings = ServeSettings(
        max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels,
        max_batch_files=args.max_batch_files, token=args.token or os.environ.get("LESIONLENS_API_TOKEN") or None,
        batching=args.batching, max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
        threads=args.threads, decode_workers=args.decode_workers, int8=args.int8,
        db=args.db, case_images=args.case_images, store_predictions=args.store_predictions,
        registry=str(args.registry) if args.registry else None, shadow=args.shadow,
        monitor_reference=args.monitor_reference,
    )
    app = create_app(args.bundle, settings)
    what = args.bundle or f"the champion of registry {args.registry}"
    print(f"LesionLens serving {what} on http://{args.host}:{args.port}/ (docs at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, access_log=args.access_log, log_level="info")
    return 0
