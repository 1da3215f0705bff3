"""Who an image comes from: sex, age and body site, for subgroup figures (the gate's, the case
study's). The readers keep only what training needs; this module goes back to a table's source CSV
and picks up these columns where the data has them (HAM10000's ``age, sex, localization``, a case
export's ``age, sex, site``, ISIC's ``age_approx, sex, anatom_site_general``). Class folders and
layouts without them give empty values. Pandas-free except for reading a CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a type only
    from lesionlens.data.table import ImageTable

# The subgroup dimensions, and the CSV columns each may be read from (first found wins).
FIELDS = {
    "sex": ("sex", "gender"),
    "age": ("age", "age_approx", "age_approximate"),
    "site": ("site", "localization", "anatom_site_general", "anatom_site_general_challenge", "body_site"),
}
# 20-year bands: wide enough that a band of a few hundred images holds some melanomas.
AGE_BANDS = ((0, 20), (20, 40), (40, 60), (60, 80), (80, 200))
_MISSING = {"", "unknown", "nan", "none", "na", "n/a"}


def age_band(age: int | float | None) -> str:
    """``40-59`` for an age of 47; ``unknown`` without one."""
    if age is None:
        return "unknown"
    for low, high in AGE_BANDS:
        if low <= age < high:
            return f"{low}-{high - 1}" if high < 200 else f"{low}+"
    return "unknown"


def clean(field: str, value: object) -> str:
    """A metadata value as the manifest stores it: lower-case text, an age as a whole number, empty
    when missing or unreadable."""
    text = "" if value is None else str(value).strip().lower()
    if text in _MISSING:
        return ""
    if field == "age":
        try:
            age = float(text)
        except ValueError:
            return ""
        return str(int(age)) if 0 <= age < 150 else ""
    return text


def subgroup_of(field: str, value: str) -> str:
    """The subgroup a cleaned value falls in: the age band for ages, the value itself otherwise."""
    if field == "age":
        return age_band(int(value)) if value else "unknown"
    return value or "unknown"


def read_metadata(table: ImageTable) -> dict[str, list[str]]:
    """Field -> one cleaned value per row of ``table`` (empty where unknown), looked up in the CSV
    each row was read from (its ``source`` and ``row`` columns)."""
    return _lookup(table, FIELDS, clean)[0]


def read_columns(table: ImageTable, names: list[str]) -> dict[str, list[str]]:
    """Any named columns of the table's source CSVs (HAM10000's ``dataset``, a site's scanner, ...),
    one stripped value per row, empty where unknown. A column no source CSV has is an error naming
    the column and the files looked in, so a misspelt name is not read as "all unknown"."""
    values, found = _lookup(table, {n: (n.strip().lower(),) for n in names},
                            lambda _f, v: "" if v is None else str(v).strip())
    missing = [n for n in names if n not in found]
    if missing:
        sources = sorted({str(s) for s in table.frame["source"] if isinstance(s, str)})
        raise ValueError(f"no column {', '.join(repr(m) for m in missing)} in the table's CSV files "
                         f"({', '.join(sources[:3]) or 'none: a folder layout has no metadata'})")
    return values


def _lookup(table: ImageTable, fields: dict[str, tuple[str, ...]], convert) -> tuple[dict[str, list[str]], set[str]]:
    """The values of ``fields`` per row, and the fields some source CSV has."""
    import pandas as pd

    out = {f: [""] * len(table) for f in fields}
    found: set[str] = set()
    frame = table.frame
    by_source: dict[str, list[int]] = {}
    for pos, (source, row) in enumerate(zip(frame["source"], frame["row"])):
        if isinstance(source, str) and not pd.isna(row) and Path(source).suffix.lower() in (".csv", ".tsv", ".txt"):
            by_source.setdefault(source, []).append(pos)
    for source, positions in by_source.items():
        try:
            csv = pd.read_csv(source, dtype=str, keep_default_na=False, skipinitialspace=True)
        except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
            raise ValueError(f"{source}: cannot read the metadata columns: {e}") from e
        columns = {c.strip().lower(): c for c in csv.columns}
        for field, names in fields.items():
            column = next((columns[n] for n in names if n in columns), None)
            if column is None:
                continue
            found.add(field)
            values = csv[column].tolist()
            for pos in positions:
                line = int(frame["row"].iat[pos])  # 1-based, header = line 1
                if 2 <= line <= len(values) + 1:
                    out[field][pos] = convert(field, values[line - 2])
    return out, found
