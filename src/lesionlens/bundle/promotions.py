"""The registry's promotion log: append-only, hash-chained, replayable. Torch-free.

One JSON object per line. Every entry names the one before it (``prev``, the previous entry's
``hash``) and its own ``hash`` is the sha256 of its canonical JSON without that field, so changing,
removing or reordering any entry breaks the chain from there on. Replaying the entries from the
start gives the aliases; :mod:`lesionlens.bundle.registry` never stores aliases anywhere the log
does not say them (``aliases.json`` is a copy for people and other tools, checked against it).

Actions and how they move the aliases (``champion``, ``challenger``, ``previous``):
- ``add``: a bundle enters the registry; no alias moves. Its ``reason`` is the folder name the bundle
  had, since its digest says nothing to a person.
- ``assign``: ``challenger`` points at a bundle (or at none); a challenger is a candidate, not yet
  in front of patients, so it needs no gate.
- ``promote``: ``champion`` moves to a bundle; the old champion becomes ``previous``, and the
  challenger alias is cleared if it named the new champion. Its ``basis`` says why it was allowed:
  ``gate`` (a passed gate report, whose digest is ``gate``), ``force`` (an explicit ``--force``
  with a reason) or ``first`` (there was no champion to compare with).
- ``rollback``: ``champion`` and ``previous`` swap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lesionlens.digest import json_digest

ALIASES = ("champion", "challenger", "previous")
ACTIONS = ("add", "assign", "promote", "rollback")
BASES = ("gate", "force", "first", "rollback", "none")
GENESIS = "0" * 64  # what the first entry's ``prev`` is
FIELDS = ("seq", "time", "who", "action", "alias", "from", "to", "basis", "gate", "reason", "prev", "hash")


class LogError(ValueError):
    """The promotion log is unreadable or fails verification."""


@dataclass(frozen=True)
class Entry:
    """One line of the log. ``from_`` is the alias's target before, ``to`` after (for ``add``: the
    bundle added). ``gate`` is the sha256 of the gate report that allowed a promotion."""

    seq: int
    time: str
    who: str
    action: str
    alias: str | None
    from_: str | None
    to: str | None
    basis: str
    gate: str | None
    reason: str
    prev: str
    hash: str = ""

    def body(self) -> dict:
        """The entry as written, without its own hash (what the hash covers)."""
        return {"seq": self.seq, "time": self.time, "who": self.who, "action": self.action, "alias": self.alias,
                "from": self.from_, "to": self.to, "basis": self.basis, "gate": self.gate, "reason": self.reason,
                "prev": self.prev}

    def sealed(self) -> Entry:
        return Entry(**{**self.__dict__, "hash": json_digest(self.body())})

    def to_line(self) -> str:
        return json.dumps({**self.body(), "hash": self.hash}, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class Replay:
    """Where the log leaves the aliases, and the chain's head."""

    aliases: dict[str, str | None]
    seq: int
    head: str
    bundles: tuple[str, ...] = field(default=())  # digests added, in order

    @staticmethod
    def empty() -> Replay:
        return Replay({a: None for a in ALIASES}, 0, GENESIS)


def read_entries(path: Path) -> list[Entry]:
    """The log's entries; a line that is not a well-formed entry is an error naming the line."""
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LogError(f"{path}: cannot read the promotion log: {e}") from e
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict) or sorted(raw) != sorted(FIELDS):
                raise ValueError(f"expected the fields {', '.join(FIELDS)}")
            entries.append(Entry(**{("from_" if k == "from" else k): v for k, v in raw.items()}))
        except (ValueError, TypeError) as e:
            raise LogError(f"{path}, line {number}: not a promotion-log entry ({e})") from e
    return entries


def replay(entries: list[Entry], where: Path | str = "promotion log") -> Replay:
    """Check the chain entry by entry and apply each to the aliases; the first broken link or
    impossible move is an error naming its line."""
    state = Replay.empty()
    aliases = dict(state.aliases)
    bundles: list[str] = []
    for i, e in enumerate(entries):
        at = f"{where}, entry {i + 1}"
        if e.seq != i + 1:
            raise LogError(f"{at}: sequence number {e.seq}, expected {i + 1} (an entry was removed or reordered)")
        if e.prev != state.head:
            raise LogError(f"{at}: it does not follow the entry before it (prev {e.prev[:12]}, expected "
                           f"{state.head[:12]}): the log was changed")
        if e.sealed().hash != e.hash:
            raise LogError(f"{at}: its hash does not match its content: the entry was changed after it was written")
        aliases = apply(aliases, bundles, e, at)
        if e.action == "add":
            bundles.append(e.to)
        state = Replay(dict(aliases), e.seq, e.hash, tuple(bundles))
    return state


def apply(aliases: dict[str, str | None], bundles: list[str], e: Entry, at: str) -> dict[str, str | None]:
    """The aliases after entry ``e``; an entry that does not fit the state before it is an error."""
    if e.action not in ACTIONS or e.basis not in BASES:
        raise LogError(f"{at}: unknown action {e.action!r} or basis {e.basis!r}")
    out = dict(aliases)
    if e.action == "add":
        if not e.to or e.to in bundles:
            raise LogError(f"{at}: adds bundle {e.to!r}, which is empty or already added")
        return out
    if e.to is not None and e.to not in bundles:
        raise LogError(f"{at}: moves {e.alias} to {e.to[:12]}, a bundle the log never added")
    if e.from_ != aliases.get(e.alias):
        raise LogError(f"{at}: says {e.alias} was {_short(e.from_)}, but the entries before it leave it at "
                       f"{_short(aliases.get(e.alias))}")
    if e.action == "assign":
        if e.alias != "challenger":
            raise LogError(f"{at}: only the challenger is assigned; the champion moves by promotion or rollback")
        out["challenger"] = e.to
    elif e.action == "promote":
        if e.alias != "champion" or e.to is None:
            raise LogError(f"{at}: a promotion moves the champion to a bundle")
        if e.basis == "gate" and not e.gate:
            raise LogError(f"{at}: a promotion on a gate names the gate report's digest")
        if e.basis == "first" and aliases["champion"] is not None:
            raise LogError(f"{at}: basis 'first' while there was a champion")
        out["champion"], out["previous"] = e.to, aliases["champion"] if aliases["champion"] != e.to else aliases["previous"]
        if out["challenger"] == e.to:
            out["challenger"] = None
    elif e.action == "rollback":
        if e.alias != "champion" or aliases["previous"] is None or e.to != aliases["previous"]:
            raise LogError(f"{at}: a rollback moves the champion to the previous champion")
        out["champion"], out["previous"] = aliases["previous"], aliases["champion"]
    return out


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "none"


def history_lines(entries: list[Entry], names: dict[str, str]) -> list[str]:
    """The log as a person reads it: one line per entry, bundles by name and short digest."""
    def name(digest: str | None) -> str:
        return "none" if digest is None else f"{names.get(digest, '?')} ({digest[:12]})"

    out = []
    for e in entries:
        if e.action == "add":
            what = f"added {name(e.to)}"
        else:
            what = f"{e.action} {e.alias}: {name(e.from_)} -> {name(e.to)}"
            if e.basis in ("gate", "force", "first"):
                what += {"gate": f" on gate report {(e.gate or '')[:12]}", "force": " FORCED",
                         "first": " (first champion)"}[e.basis]
            if e.reason:
                what += f"; reason: {e.reason}"
        out.append(f"{e.seq:>4}  {e.time}  {e.who:<12} {what}")
    return out
