"""The case store as an :class:`~lesionlens.data.table.ImageTable`: what ``lesionlens check --db``
checks (duplicates, the same lesion under two ids or across fixed partitions, conflicting labels,
image quality, suspected label errors) before cases become training data.

Only cases with a settled label are in the table: the others have no label to check, and their
photos' quality was already judged when they were submitted (each case's ``quality``). The group
is the patient, else the lesion, else the case, as in exports.
"""

from __future__ import annotations

from lesionlens.cases.store import CaseStore
from lesionlens.data.table import ImageTable, make_table


def store_table(store: CaseStore) -> tuple[ImageTable, int]:
    """(the settled cases as a table, how many cases were left out for having no settled label)."""
    records, left_out, classes, order = [], 0, [], []
    for r in store.records():
        order += [c for c in r.probabilities if c not in order]  # the model's class order
        label = r.settlement.label
        if label is None:
            left_out += 1
            continue
        if label not in classes:
            classes.append(label)
        m = r.metadata
        records.append({"image_id": r.id, "path": str(store.images.path(r.image)), "label": label,
                        "group": m.patient_id or m.lesion_id or r.id, "partition": r.partition,
                        "source": store.describe(), "row": None})
    classes = [c for c in order if c in classes] + [c for c in classes if c not in order]
    return make_table(records, classes, "cases", store.images.root), left_out
