"""The ``lesionlens`` command: thin subcommands that parse arguments, call one library function
and print the result object it returns (summaries are formatted by the library).

    lesionlens train | explore | models | config | demo-data     lesionlens.cli.train
    lesionlens evaluate | report | calibrate                     lesionlens.cli.evaluate
    lesionlens predict                                           lesionlens.cli.predict
    lesionlens export | serve                                    lesionlens.cli.serve
    lesionlens check                                             lesionlens.cli.check
    lesionlens cases export | study | token | erase | check | partition   lesionlens.cli.cases
    lesionlens registry add | list | challenger | promote | rollback | history | verify   lesionlens.cli.registry
    lesionlens gate | gate freeze                                 lesionlens.cli.upkeep
    lesionlens monitor [reference]                               lesionlens.cli.upkeep
    lesionlens retrain                                           lesionlens.cli.upkeep

Training flags are derived from the typed configuration (:mod:`lesionlens.cli.options`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from lesionlens import __version__
from lesionlens.cli import (
    cases,
    check,
    evaluate,
    explain,
    predict,
    registry,
    serve,
    train,
    upkeep,
)

COMMAND_GROUPS = (train, evaluate, explain, predict, serve, check, cases, registry, upkeep)
# Commands that run PyTorch on many images: started again with tcmalloc / jemalloc preloaded when
# the system has one (lesionlens.training.allocator: 1.3-1.5x faster training steps on a CPU).
TORCH_COMMANDS = frozenset({"train", "explore", "evaluate", "calibrate", "predict", "explain", "retrain"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionlens",
        description="Train, evaluate and use image classifiers for skin-lesion (and any other) images.",
        epilog="Run `lesionlens COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"lesionlens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debugging detail")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        if argv is None and args.command in TORCH_COMMANDS:
            restart_with_allocator()
        return args.run(args)
    except ImportError as e:
        print(f"error: {e}. `lesionlens {args.command}` needs the {args.extra} extra: "
              f"pip install 'lesionlens[{args.extra}]'", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


def restart_with_allocator() -> None:
    """Start this command again (the same process, by exec) with jemalloc or tcmalloc preloaded, when
    ``LESIONLENS_ALLOCATOR`` asks for one the system has and it is not loaded yet; otherwise return."""
    from lesionlens.training import allocator

    allocator.restore_environment()
    env = allocator.relaunch_environment(allocator.requested())
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
