"""The staleness clock: how old the model's view of the world is, and how much of the world it
has not seen.

The training data's cutoff is the card's creation time (when training finished): a bundle records
no date for its training images (HAM10000 and ISIC have none), so its data can be no newer than the
card. The clock reads the days since that cutoff, and the share of stored cases (answered by any
model) newer than it: photos the model could not have learned from, and, once labelled, what a
retrain would add.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lesionlens.bundle.card import Card
from lesionlens.cases.store import CaseRecord

BASIS = "the card's creation time: the bundle records no date for its training images"


@dataclass(frozen=True)
class Staleness:
    cutoff: datetime
    basis: str
    as_of: datetime
    cases: int  # in the store
    newer: int  # of them, created after the cutoff
    labelled_newer: int  # of those, with a settled label

    @property
    def days(self) -> float:
        return self.days_at(self.as_of)

    def days_at(self, when: datetime) -> float:
        return (when - self.cutoff).total_seconds() / 86400.0

    @property
    def share_newer(self) -> float | None:
        return self.newer / self.cases if self.cases else None

    def to_dict(self) -> dict:
        return {"cutoff": self.cutoff.isoformat(), "basis": self.basis, "as_of": self.as_of.isoformat(timespec="seconds"),
                "days": round(self.days, 3), "cases": self.cases, "newer": self.newer,
                "share_newer": None if self.share_newer is None else round(self.share_newer, 4),
                "labelled_newer": self.labelled_newer}

    def lines(self) -> list[str]:
        share = "" if self.share_newer is None else f" ({self.share_newer:.0%})"
        return [f"staleness: {self.days:.1f} days since the training data's cutoff, {self.cutoff:%Y-%m-%d %H:%M} UTC "
                f"({self.basis})",
                f"  {self.newer} of {self.cases} stored cases are newer than the model{share}, {self.labelled_newer} "
                "of them labelled"]


def staleness(card: Card, records: list[CaseRecord], as_of: datetime) -> Staleness:
    cutoff = datetime.fromisoformat(card.created)
    newer = [r for r in records if r.created_at > cutoff]
    return Staleness(cutoff, BASIS, as_of, len(records), len(newer), sum(r.settlement.settled for r in newer))
