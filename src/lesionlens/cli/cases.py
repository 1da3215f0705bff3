"""``lesionlens cases``: the case store a server keeps (``serve --db``) from the command line.

    lesionlens cases export --db cases.sqlite --out data/cases-2026-11    a training set (consented, settled)
    lesionlens cases study --db cases.sqlite --out reports/study          subgroups: counts, sensitivity, plots
    lesionlens cases token add alice --role label --db cases.sqlite       a labeller's token (printed once)
    lesionlens cases erase CASE_ID --db cases.sqlite --by dpo             a patient's right to erasure
    lesionlens cases check --db cases.sqlite [--collect-orphans]          integrity, missing and orphan images
    lesionlens cases partition test CASE_ID ... --db cases.sqlite         fix partitions for exports
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lesionlens.config import Role, choices

EXAMPLES = __doc__.split("\n\n", 1)[1]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cases", help="the case store: export, study statistics, tokens, erasure, integrity",
                       description="Work with the cases a server keeps (`lesionlens serve BUNDLE --db DB`).",
                       epilog="examples:\n" + EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(title="commands", metavar="COMMAND", dest="cases_command", required=True)

    def command(name: str, help: str, run) -> argparse.ArgumentParser:
        c = commands.add_parser(name, help=help, description=help)
        c.add_argument("--db", required=True, help="the case store: a SQLite path or a database URL (as for serve)")
        c.add_argument("--case-images", help="folder of case photos (default: <db>.images beside a SQLite file)")
        c.set_defaults(run=run, extra="serve")
        return c

    c = command("export", "write a training set: consented cases with settled labels, a CSV and a manifest", _export)
    c.add_argument("--out", type=Path, required=True, help="a new folder")
    c.add_argument("--min-readers", type=int, default=1, help="export only cases at least this many readers "
                                                              "labelled (adjudicated cases always count)")
    c = command("study", "cases and diagnoses by body site, age band and sex, and sensitivity / specificity "
                         "by subgroup with 95%% intervals", _study)
    c.add_argument("--out", type=Path, help="also write study.csv, study.json and plots here")
    c.set_defaults(extra="train")  # the plots need matplotlib
    c = command("token", "add, revoke or list the server's tokens", _token)
    c.add_argument("action", choices=("add", "revoke", "list"))
    c.add_argument("name", nargs="?", help="who the token is for (add, revoke)")
    c.add_argument("--role", choices=choices(Role), default="label",
                   help="submit: send photos; label: also read and label cases; admin: also adjudicate and erase")
    c = command("erase", "delete cases, their labels and photos (a patient's right to erasure)", _erase)
    c.add_argument("case_ids", nargs="+", metavar="CASE_ID")
    c.add_argument("--by", required=True, help="who asked for it (kept with the erasure record)")
    c = command("check", "the database's integrity check, every case's photo present and intact, orphan photos",
                _check)
    c.add_argument("--collect-orphans", action="store_true",
                   help="delete photos no case points at (what a crash between photo and row leaves)")
    c.add_argument("--grace-minutes", type=float, default=10.0,
                   help="leave orphans younger than this alone: a submission may be in flight (default 10)")
    c = command("partition", "fix the partition of cases for exports (train, val, test; 'none' clears it)",
                _partition)
    c.add_argument("partition", choices=("train", "val", "test", "none"))
    c.add_argument("case_ids", nargs="+", metavar="CASE_ID")


def _open(args: argparse.Namespace):
    from lesionlens.cases.store import CaseStore

    return CaseStore.open(args.db, args.case_images)


def _export(args: argparse.Namespace) -> int:
    from lesionlens.cases.export import export_cases

    print("\n".join(export_cases(_open(args), args.out, args.min_readers).lines()))
    return 0


def _study(args: argparse.Namespace) -> int:
    from lesionlens.cases.study import study_of_store

    study = study_of_store(_open(args))
    print("\n".join(study.lines()))
    if args.out:
        from lesionlens.cases.plots import plot_study

        args.out.mkdir(parents=True, exist_ok=True)
        study.write_csv(args.out / "study.csv")
        (args.out / "study.json").write_text(json.dumps(study.to_dict(), indent=2) + "\n")
        for path in [args.out / "study.csv", args.out / "study.json", *plot_study(study, args.out)]:
            print(f"  wrote {path}")
    return 0


def _token(args: argparse.Namespace) -> int:
    store = _open(args)
    if args.action == "list":
        for t in store.tokens():
            print(f"{t['name']:<24} {t['role']:<7} created {t['created_at']}{'  REVOKED' if t['revoked'] else ''}")
        return 0
    if not args.name:
        raise ValueError(f"`cases token {args.action}` needs a NAME")
    if args.action == "add":
        secret = store.add_token(args.name, args.role)
        print(f"token for {args.name} ({args.role}); it is shown only this once:\n{secret}")
    elif not store.revoke_token(args.name):
        raise ValueError(f"no live token named {args.name!r}")
    else:
        print(f"revoked {args.name}'s token (a running server stops accepting it within seconds)")
    return 0


def _erase(args: argparse.Namespace) -> int:
    store = _open(args)
    missing = [c for c in args.case_ids if not store.erase(c, by=args.by)]
    print(f"erased {len(args.case_ids) - len(missing)} case(s)")
    if missing:
        raise ValueError(f"no such case: {', '.join(missing)}")
    return 0


def _check(args: argparse.Namespace) -> int:
    store = _open(args)
    found = store.check()
    print(f"{store.describe()}: {store.count()} cases")
    print(f"  database check: {found.database}")
    print(f"  cases whose photo is missing: {len(found.missing_images)} {found.missing_images[:10] or ''}")
    print(f"  cases whose photo is damaged: {len(found.damaged_images)} {found.damaged_images[:10] or ''}")
    print(f"  orphan photos: {len(found.orphan_images)}; half-written files: {found.temporary_files}")
    if args.collect_orphans:
        removed = store.collect_orphans(args.grace_minutes * 60)
        print(f"  collected {len(removed)} orphan photo(s)")
    return 0 if found.ok else 1


def _partition(args: argparse.Namespace) -> int:
    n = _open(args).set_partition(args.case_ids, None if args.partition == "none" else args.partition)
    print(f"{n} case(s) now in {args.partition}")
    if n < len(args.case_ids):
        raise ValueError(f"{len(args.case_ids) - n} of the case ids do not exist")
    return 0
