"""The model registry: immutable bundles named by content digest, three aliases, and a promotion
log that says who moved which alias, when, why and on what evidence. Torch-free: the server reads it.

    DIR/
      registry.json          {"format": "lesionlens-registry/1"}
      bundles/<digest>/      read-only copies of bundles; <digest> = bundle_digest(the bundle)
      gates/<sha256>.json    the gate reports that promoted a champion, named by their sha256
      log.jsonl              the promotion log (lesionlens.bundle.promotions): the aliases are what it replays to
      aliases.json           the same aliases, for people and other tools (checked by ``verify``)

Every change takes a lock, writes the whole new log to a temporary file, fsyncs it and renames it
over the old one (then fsyncs the folder): a crash at any point leaves either the old log or the
new one, never half of one, so the aliases in force are always those of a complete log. A server
polls ``log_path`` and swaps models when the champion moves.

The champion moves only with a passed gate report naming the current champion and the new one
(``lesionlens gate``), or with ``force`` and a reason, logged as forced; the first champion needs a
reason. A rollback returns to the previous champion, which a gate (or a forced move) once admitted.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lesionlens.bundle.card import Card, read_card
from lesionlens.bundle.gate_reports import (
    GateReportError,
    gate_problem,
    read_gate_report,
)
from lesionlens.bundle.promotions import (
    ALIASES,
    Entry,
    LogError,
    Replay,
    read_entries,
    replay,
)
from lesionlens.bundle.schema import BundleError
from lesionlens.digest import file_digest, tree_digest
from lesionlens.durable import (
    fsync_dir,
    make_read_only,
    make_writable,
    sync_tree,
    write_atomic,
)

FORMAT = "lesionlens-registry/1"
# Left out of a registered bundle and its digest: training's resume state (large, not the model),
# its logs, and evaluations written into the bundle folder later.
REGISTRY_EXCLUDE = ("checkpoints", "logs", "evaluations")
DIGEST_LENGTH = 64
MIN_PREFIX = 6  # the shortest digest prefix accepted on the command line


class RegistryError(ValueError):
    """The registry refused an operation or failed a check; the message says what and where."""


def bundle_digest(folder: str | Path) -> str:
    """A bundle's identity everywhere (registry, gate reports, answers, stored cases): the digest
    of its files, without ``REGISTRY_EXCLUDE``."""
    return tree_digest(folder, REGISTRY_EXCLUDE)


@dataclass(frozen=True)
class RegistryState:
    """The aliases a verified log replays to: ``aliases[name]`` is a digest or None."""

    aliases: dict[str, str | None]
    seq: int  # the number of log entries: changes whenever anything is logged
    head: str  # the last entry's hash
    bundles: tuple[str, ...]  # digests, in the order they were added

    @property
    def champion(self) -> str | None:
        return self.aliases["champion"]


@dataclass(frozen=True)
class Verification:
    """What ``verify`` found; ``problems`` is empty when everything holds."""

    state: RegistryState | None
    entries: int
    bundles_checked: int
    gates_checked: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        if self.ok:
            s = self.state
            aliases = ", ".join(f"{a} {_short(d)}" for a, d in s.aliases.items())
            return [(f"verified: {self.entries} log entries chain and replay to the aliases ({aliases}); "
                     f"{self.bundles_checked} bundles match their digests; {self.gates_checked} gate reports "
                     "match theirs")]
        return [f"FAILED verification ({len(self.problems)} problems):", *(f"  - {p}" for p in self.problems)]


class Registry:
    def __init__(self, root: Path):
        self.root = root

    # -- layout -----------------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def aliases_path(self) -> Path:
        return self.root / "aliases.json"

    def bundle_path(self, digest: str) -> Path:
        return self.root / "bundles" / digest

    def gate_path(self, digest: str) -> Path:
        return self.root / "gates" / f"{digest}.json"

    @classmethod
    def open(cls, folder: str | Path, create: bool = False) -> Registry:
        """The registry in ``folder``; with ``create`` an absent or empty folder becomes one."""
        root = Path(folder).expanduser()
        marker = root / "registry.json"
        if not marker.is_file():
            if create and (not root.exists() or (root.is_dir() and not any(root.iterdir()))):
                for sub in ("bundles", "gates"):
                    (root / sub).mkdir(parents=True, exist_ok=True)
                write_atomic(marker, json.dumps({"format": FORMAT}, indent=2).encode())
            elif root.is_dir() and any(root.iterdir()):
                raise RegistryError(f"{root}: not a LesionLens registry (no registry.json) and not empty; "
                                    "give an empty or new folder to create one")
            else:
                raise RegistryError(f"{root}: no registry here; `lesionlens registry add {root} BUNDLE` creates one")
        try:
            fmt = json.loads(marker.read_text()).get("format")
        except (OSError, json.JSONDecodeError, AttributeError) as e:
            raise RegistryError(f"{marker}: unreadable: {e}") from e
        if fmt != FORMAT:
            raise RegistryError(f"{marker}: registry format {fmt!r}; this LesionLens reads {FORMAT}")
        return cls(root)

    # -- reading ----------------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        try:
            return read_entries(self.log_path)
        except LogError as e:
            raise RegistryError(str(e)) from e

    def state(self) -> RegistryState:
        """Replay and verify the log (chain, hashes, moves) and check each alias's bundle is here."""
        try:
            r: Replay = replay(self.entries(), self.log_path)
        except LogError as e:
            raise RegistryError(str(e)) from e
        for alias, digest in r.aliases.items():
            if digest is not None and not (self.bundle_path(digest) / "card.json").is_file():
                raise RegistryError(f"{self.root}: alias {alias} points at bundle {digest}, which is missing from "
                                    f"{self.root / 'bundles'}")
        return RegistryState(r.aliases, r.seq, r.head, r.bundles)

    def resolve(self, spec: str, state: RegistryState | None = None) -> str:
        """A bundle's digest from an alias name, a full digest or a unique prefix of one."""
        state = state or self.state()
        if spec in ALIASES:
            digest = state.aliases[spec]
            if digest is None:
                raise RegistryError(f"{self.root}: no bundle is {spec}")
            return digest
        spec = spec.lower()
        matches = [d for d in state.bundles if d.startswith(spec)] if len(spec) >= MIN_PREFIX else []
        if len(matches) != 1:
            why = "matches no bundle" if not matches else f"matches {len(matches)} bundles"
            if len(spec) < MIN_PREFIX:
                why = f"is shorter than {MIN_PREFIX} characters"
            raise RegistryError(f"{self.root}: {spec!r} {why}; give an alias ({', '.join(ALIASES)}) or a digest "
                                "(`lesionlens registry list` shows them)")
        return matches[0]

    def card(self, digest: str, verify: bool = True) -> Card:
        return read_card(self.bundle_path(digest), verify=verify)

    def names(self) -> dict[str, str]:
        """The folder name each bundle had when it was added (its digest says nothing to a person)."""
        return {e.to: e.reason for e in self.entries() if e.action == "add"}

    # -- changing ---------------------------------------------------------------------------------
    def add(self, bundle: str | Path, who: str | None = None, name: str | None = None) -> tuple[str, bool]:
        """Copy a bundle in (read-only, named by its digest); returns (digest, newly added).
        The bundle must be complete, its weights intact and exported to ONNX (the server runs that)."""
        source = Path(bundle).expanduser()
        try:
            card = read_card(source)
        except BundleError as e:
            raise RegistryError(f"refused: {e}") from e
        if card.onnx is None:
            raise RegistryError(f"{source}: no ONNX export, which the server needs; run `lesionlens export {source}` "
                                "first")
        if not (source / card.onnx.file).is_file() or file_digest(source / card.onnx.file) != card.onnx.sha256:
            raise RegistryError(f"{source / card.onnx.file}: missing or does not match the sha256 in the card")
        with self._locked():
            digest = bundle_digest(source)
            target = self.bundle_path(digest)
            state = self.state()
            if digest in state.bundles:
                return digest, False
            tmp = self.root / "bundles" / f".incoming-{uuid.uuid4().hex}"
            shutil.copytree(source, tmp, ignore=_ignore_excluded(source))
            copied = bundle_digest(tmp)
            if copied != digest:
                shutil.rmtree(tmp, ignore_errors=True)
                raise RegistryError(f"{source}: the bundle changed while it was copied (digest {digest[:12]} before, "
                                    f"{copied[:12]} after); try again when nothing writes to it")
            if target.exists():  # a copy left by an add that crashed before logging: same content, replace it
                make_writable(target)
                shutil.rmtree(target)
            sync_tree(tmp)
            os.replace(tmp, target)
            make_read_only(target)
            fsync_dir(target.parent)
            self._append(state, "add", None, None, digest, "none", None, name or source.resolve().name, who)
            return digest, True

    def assign_challenger(self, spec: str | None, who: str | None = None, reason: str = "") -> Entry:
        """Point ``challenger`` at a bundle (``None`` clears it)."""
        with self._locked():
            state = self.state()
            digest = self.resolve(spec, state) if spec else None
            if digest is not None and digest == state.champion:
                raise RegistryError(f"{digest[:12]} is the champion already; a challenger is another bundle")
            return self._append(state, "assign", "challenger", state.aliases["challenger"], digest, "none", None,
                                reason, who)

    def promote(self, spec: str, reason: str, gate: str | Path | None = None, force: bool = False,
                who: str | None = None) -> Entry:
        """Make a bundle the champion. It needs a passed gate report naming the current champion and
        this bundle; or ``force`` with a reason (logged as forced); the first champion needs a reason."""
        if not reason.strip():
            raise RegistryError("a promotion needs a reason (--reason): the log keeps it for whoever asks later")
        with self._locked():
            state = self.state()
            digest = self.resolve(spec, state)
            current = state.champion
            if digest == current:
                raise RegistryError(f"{digest[:12]} is the champion already")
            gate_digest, problem = None, None
            if gate is not None:
                gate_digest, report = _read_gate(Path(gate))
                problem = gate_problem(report, champion=current, challenger=digest)
            if current is None:
                basis = "first"
            elif gate_digest is not None and problem is None:
                basis = "gate"
            elif force:
                basis = "force"  # a gate report given anyway is kept as the evidence looked at
            elif problem is not None:
                raise RegistryError(f"{gate}: {problem}")
            else:
                raise RegistryError(f"moving the champion from {current[:12]} to {digest[:12]} needs a passed gate "
                                    "report (`lesionlens gate`, then --gate gate.json), or --force with a reason")
            if gate_digest is not None:
                self._keep_gate(Path(gate), gate_digest)
            return self._append(state, "promote", "champion", current, digest, basis, gate_digest, reason, who)

    def rollback(self, reason: str, who: str | None = None) -> Entry:
        """Make the previous champion the champion again (and the current one previous)."""
        if not reason.strip():
            raise RegistryError("a rollback needs a reason (--reason)")
        with self._locked():
            state = self.state()
            if state.aliases["previous"] is None:
                raise RegistryError(f"{self.root}: there is no previous champion to roll back to")
            return self._append(state, "rollback", "champion", state.champion, state.aliases["previous"],
                                "rollback", None, reason, who)

    # -- checking ---------------------------------------------------------------------------------
    def verify(self, deep: bool = True) -> Verification:
        """Everything the registry promises: the log chains and replays; every logged bundle is here
        and (``deep``) matches its digest and card; every gate report matches its digest and allowed
        its promotion; aliases.json says what the log says."""
        problems: list[str] = []
        try:
            entries = self.entries()
            r = replay(entries, self.log_path)
        except (RegistryError, LogError) as e:
            return Verification(None, 0, 0, 0, [str(e)])
        state = RegistryState(r.aliases, r.seq, r.head, r.bundles)
        bundles = gates = 0
        for digest in r.bundles:
            folder = self.bundle_path(digest)
            if not (folder / "card.json").is_file():
                problems.append(f"{folder}: missing (the log added it)")
                continue
            if deep:
                bundles += 1
                actual = bundle_digest(folder)
                if actual != digest:
                    problems.append(f"{folder}: its files have digest {actual[:12]}, not its name: it was changed")
                try:
                    read_card(folder)
                except BundleError as e:
                    problems.append(str(e))
        for e in entries:
            if e.gate is None:
                continue
            path = self.gate_path(e.gate)
            if not path.is_file():
                problems.append(f"log entry {e.seq}: its gate report {path} is missing")
                continue
            gates += 1
            if file_digest(path) != e.gate:
                problems.append(f"{path}: does not match its digest: the report was changed")
                continue
            if e.basis == "gate":
                problem = gate_problem(json.loads(path.read_bytes()), e.from_, e.to)
                if problem:
                    problems.append(f"log entry {e.seq}: {problem}")
        try:
            written = json.loads(self.aliases_path.read_text()) if self.aliases_path.exists() else None
        except (OSError, json.JSONDecodeError):
            written = "unreadable"
        if r.seq and written != _aliases_document(state):
            problems.append(f"{self.aliases_path}: does not say what the log replays to (stale or edited); "
                            "the log is what counts")
        return Verification(state, len(entries), bundles, gates, problems)

    # -- internals --------------------------------------------------------------------------------
    def _keep_gate(self, path: Path, digest: str) -> None:
        target = self.gate_path(digest)
        if not target.exists():
            write_atomic(target, path.read_bytes())
            target.chmod(0o444)

    def _append(self, state: RegistryState, action: str, alias: str | None, from_: str | None, to: str | None,
                basis: str, gate: str | None, reason: str, who: str | None) -> Entry:
        entry = Entry(state.seq + 1, _now(), who or _user(), action, alias, from_, to, basis, gate, reason,
                      state.head).sealed()
        entries = [*self.entries(), entry]
        replay(entries, self.log_path)  # never write a log that would not verify
        write_atomic(self.log_path, ("\n".join(e.to_line() for e in entries) + "\n").encode())
        new = self.state()
        write_atomic(self.aliases_path, (json.dumps(_aliases_document(new), indent=2) + "\n").encode())
        return entry

    @contextmanager
    def _locked(self):
        """One writer at a time (readers need no lock: they see a whole old or whole new log)."""
        with open(self.root / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _aliases_document(state: RegistryState) -> dict:
    return {"aliases": state.aliases, "seq": state.seq, "head": state.head}


def _ignore_excluded(source: Path):
    def ignore(folder: str, names: list[str]) -> list[str]:
        top = Path(folder).resolve() == source.resolve()
        return [n for n in names if n.startswith(".") or (top and n in REGISTRY_EXCLUDE)]
    return ignore


def _read_gate(path: Path) -> tuple[str, dict]:
    try:
        return read_gate_report(path)
    except GateReportError as e:
        raise RegistryError(str(e)) from e


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "none"
