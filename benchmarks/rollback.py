"""A promotion and a rollback under load, through the real server and the real CLI. Prints tables.

A registry is made with two exported bundles (A champion, B challenger) and served by
`lesionlens serve --registry DIR`. A bounded client on 127.0.0.1 keeps --in-flight requests in
flight (one per keep-alive connection) while `lesionlens registry promote DIR B --force` and then
`lesionlens registry rollback DIR` run as separate processes. For each move it measures the time
from the CLI's return to the first answer naming the new digest (target <= 1 s; negative when the
server swapped before the CLI process had exited), failed requests (target 0), the answers per
digest before and after, and "stale" answers: the old digest answering a request sent after the
new one had answered (must be 0). Finally the promotion log must verify (`lesionlens registry
verify`) and replay to the aliases, and the server must report the log's seq.

    flock /tmp/lesionlens-heavy.lock .venv/bin/python benchmarks/rollback.py \\
        --bundles runs/bench-lite0 runs/other-lite0 --images ../shared/data/ham10000/images

Both bundles must be exported (`lesionlens export BUNDLE`), with the same classes and different
weights (so their answers differ).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from serve_bench import (  # benchmarks/ is on the path
    HOST,
    client,
    load_files,
    request_bytes,
)

from lesionlens.bundle.promotions import read_entries, replay
from lesionlens.bundle.registry import Registry
from lesionlens.serving.process import server_process

CLI = [sys.executable, "-m", "lesionlens.cli"]


@dataclass
class Answer:
    sent: float
    done: float
    status: int
    digest: str | None


@dataclass
class Move:
    name: str
    command: list[str]
    old: str
    new: str
    started: float = 0.0
    returned: float = 0.0
    returncode: int | None = None
    output: str = ""


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)
    sent: int = 0
    stop: bool = False


def _another(load: Load, max_requests: int) -> Callable[[], bool]:
    def another() -> bool:
        if load.stop or load.sent >= max_requests:
            return False
        load.sent += 1
        return True
    return another


def _answered(load: Load) -> Callable[[int, bytes, float], None]:
    def answered(status: int, body: bytes, sent: float) -> None:
        done, digest = time.perf_counter(), None
        if status == 200:
            try:
                digest = json.loads(body)["model"]["digest"]
            except (ValueError, KeyError, TypeError):
                status = -1  # an answer that names no model counts as failed
        load.answers.append(Answer(sent, done, status, digest))
    return answered


async def _run_move(move: Move) -> None:
    move.started = time.perf_counter()
    proc = await asyncio.to_thread(subprocess.run, move.command, capture_output=True, text=True, check=False)
    move.returned = time.perf_counter()
    move.returncode, move.output = proc.returncode, (proc.stdout + proc.stderr).strip()


async def _controller(load: Load, moves: list[Move], requests: int) -> None:
    """Each move after a third of the requests has been answered since the last one; the load
    stops once a third has been answered after the last move and ``requests`` were sent."""
    share = requests // 3
    mark = 0
    for move in moves:
        while len(load.answers) < mark + share:
            await asyncio.sleep(0.01)
        await _run_move(move)
        mark = len(load.answers)
    while len(load.answers) < mark + share or load.sent < requests:
        await asyncio.sleep(0.01)
    load.stop = True


async def _drive(port: int, requests: list[bytes], in_flight: int, total: int, moves: list[Move]) -> Load:
    load = Load()
    cap = total * 5  # a bound on the load, whatever happens to the moves
    await asyncio.gather(_controller(load, moves, total),
                         *(client(port, requests, k * 7, _another(load, cap), _answered(load))
                           for k in range(in_flight)))
    return load


def make_registry(root: Path, a: Path, b: Path) -> tuple[Registry, str, str]:
    registry = Registry.open(root, create=True)
    da, _ = registry.add(a)
    registry.promote(da, reason="rollback benchmark: first champion")
    db, _ = registry.add(b)
    registry.assign_challenger(db)
    if da == db:
        sys.exit("the two bundles have the same digest: give two different models")
    return registry, da, db


def describe_move(move: Move, answers: list[Answer], since: float, until: float) -> dict:
    """The answers to requests sent between the previous move (``since``) and this one, and between
    this move's first answer by the new model and the next move (``until``)."""
    first_new = min((a.done for a in answers if a.digest == move.new and a.done > move.started), default=None)
    before = Counter(a.digest for a in answers if since <= a.sent < move.started)
    after = [a for a in answers if first_new is not None and first_new < a.sent < until]
    stale = sum(1 for a in after if a.digest == move.old)
    after = Counter(a.digest for a in after)
    return {"cli_s": move.returned - move.started,
            "start_to_first_new_s": None if first_new is None else first_new - move.started,
            "to_first_new_s": None if first_new is None else first_new - move.returned,
            "before": before, "after": after, "stale": stale}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundles", type=Path, nargs=2, required=True, metavar=("A", "B"),
                    help="two exported bundles: A starts as champion, B is promoted, then rolled back")
    ap.add_argument("--images", type=Path, required=True, help="folder of real JPEG/PNG images")
    ap.add_argument("--n-images", type=int, default=64)
    ap.add_argument("--requests", type=int, default=600, help="at least this many requests (default 600)")
    ap.add_argument("--in-flight", type=int, default=32, help="requests kept in flight (default 32)")
    ap.add_argument("--work", type=Path, help="where the registry goes (default: a temporary folder)")
    ap.add_argument("--server-args", nargs=argparse.REMAINDER, default=[], help="passed to `lesionlens serve`")
    args = ap.parse_args()
    files = load_files(args.images, args.n_images)
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as tmp:
        root = (args.work or Path(tmp)) / "registry"
        registry, a, b = make_registry(root, *args.bundles)
        moves = [Move("promote B (--force)", [*CLI, "registry", "promote", str(root), b, "--force",
                                              "--reason", "rollback benchmark: B in"], a, b),
                 Move("rollback to A", [*CLI, "registry", "rollback", str(root),
                                        "--reason", "rollback benchmark: back to A"], b, a)]
        log = root.parent / "server.log"
        with server_process(None, "--registry", str(root), *args.server_args, host=HOST, log_path=log) as (url, _):
            port = int(url.rsplit(":", 1)[1])
            requests = [request_bytes(port, name, data) for name, data in files]
            started = time.perf_counter()
            load = asyncio.run(_drive(port, requests, args.in_flight, args.requests, moves))
            elapsed = time.perf_counter() - started
            with urllib.request.urlopen(f"{url}/readyz", timeout=10) as r:
                ready = json.loads(r.read())
            with urllib.request.urlopen(f"{url}/v1/model", timeout=10) as r:
                shadow = json.loads(r.read())["serving"]["shadow"]
        verify = subprocess.run([*CLI, "registry", "verify", str(root)], capture_output=True, text=True, check=False)
        state = registry.state()
        replayed = replay(read_entries(registry.log_path), registry.log_path)
        written = json.loads(registry.aliases_path.read_text())

    answers = load.answers
    failed = sum(1 for x in answers if x.status != 200)
    names = {a: "A", b: "B", None: "none"}
    print(f"{len(answers)} requests from {args.in_flight} connections on {HOST} in {elapsed:.1f} s "
          f"({len(answers) / elapsed:.1f}/s); {len(files)} images from {args.images}")
    print(f"A = {args.bundles[0]} ({a[:12]}), B = {args.bundles[1]} ({b[:12]})\n")
    print("| move | CLI exit | CLI s | CLI start -> first answer by new model, s | CLI return -> that answer, s "
          "| answers before (sent before the CLI) "
          "| answers after (sent after the first new answer, before the next move) | stale answers |")
    print("|---|---|---|---|---|---|---|---|")
    def fmt(counts: Counter) -> str:
        return ", ".join(f"{names.get(k, k)} {n}" for k, n in sorted(counts.items(), key=lambda kv: names.get(kv[0], "?")))

    bounds = [0.0, *(m.started for m in moves), float("inf")]
    for k, move in enumerate(moves):
        d = describe_move(move, answers, bounds[k], bounds[k + 2])
        first = "never" if d["to_first_new_s"] is None else f"{d['to_first_new_s']:+.3f}"
        from_start = "never" if d["start_to_first_new_s"] is None else f"{d['start_to_first_new_s']:.3f}"
        print(f"| {move.name} | {move.returncode} | {d['cli_s']:.2f} | {from_start} | {first} | {fmt(d['before'])} | "
              f"{fmt(d['after'])} | {d['stale']} |")
    print(f"\nfailed requests: {failed} of {len(answers)} (target 0)")
    print(f"answers per model: {fmt(Counter(x.digest for x in answers))}")
    print(f"`lesionlens registry verify`: exit {verify.returncode}: {verify.stdout.strip() or verify.stderr.strip()}")
    aliases_ok = replayed.aliases == state.aliases == written["aliases"] and state.champion == a
    print(f"log replays to the aliases: {aliases_ok} ({', '.join(f'{k} {names.get(v, v)}' for k, v in state.aliases.items())}; "
          f"seq {state.seq}); server reports digest {names.get(ready.get('model_digest'), '?')} at seq "
          f"{ready.get('registry_seq')}")
    if shadow is not None:
        print(f"shadow mode (B scored A's requests until B was promoted): {shadow}")
    for move in moves:
        if move.returncode != 0:
            print(f"{move.name} failed: {move.output}")


if __name__ == "__main__":
    main()
