"""``lesionlens registry``: model versions, the champion / challenger / previous aliases and the
promotion log (:mod:`lesionlens.bundle.registry`).

    lesionlens registry add models runs/ham10000 --challenger        copy a bundle in (named by its digest)
    lesionlens registry list models                                  bundles, aliases, figures
    lesionlens registry promote models challenger --gate gates/gate.json --reason "clinic B data"
    lesionlens registry rollback models --reason "false alarms at clinic B"
    lesionlens registry history models                               who moved what, when, why, on what evidence
    lesionlens registry verify models                                chain, digests, gate reports, aliases
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = __doc__.split("\n\n", 1)[1]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("registry", help="model versions, aliases (champion, challenger, previous), promotion log",
                       description="Keep model versions and move the aliases a server follows "
                                   "(`lesionlens serve --registry DIR`), with a log that can be verified.",
                       epilog="examples:\n" + EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(title="commands", metavar="COMMAND", dest="registry_command", required=True)

    def command(name: str, help: str, run) -> argparse.ArgumentParser:
        c = commands.add_parser(name, help=help, description=help)
        c.add_argument("registry", type=Path, metavar="DIR", help="the registry folder")
        c.set_defaults(run=run, extra="serve")
        return c

    def who(c: argparse.ArgumentParser) -> None:
        c.add_argument("--who", help="who makes the change, for the log (default: the system user name)")

    c = command("add", "copy a bundle into the registry (created if DIR is new or empty)", _add)
    c.add_argument("bundle", type=Path, help="a trained and exported bundle (`lesionlens export BUNDLE`)")
    c.add_argument("--challenger", action="store_true", help="also make it the challenger")
    c.add_argument("--champion", action="store_true",
                   help="also make it the champion; only where there is none yet (needs --reason)")
    c.add_argument("--reason", default="", help="why (kept in the log)")
    who(c)
    command("list", "the bundles, their aliases and validation figures", _list)
    c = command("challenger", "point the challenger alias at a bundle ('none' clears it)", _challenger)
    c.add_argument("bundle", metavar="BUNDLE", help="an alias, a digest or a digest prefix, or 'none'")
    c.add_argument("--reason", default="", help="why (kept in the log)")
    who(c)
    c = command("promote", "make a bundle the champion, on a passed gate report (or --force with a reason)", _promote)
    c.add_argument("bundle", metavar="BUNDLE", help="an alias (usually 'challenger'), a digest or a digest prefix")
    c.add_argument("--gate", type=Path, help="gate.json from `lesionlens gate CHAMPION CHALLENGER ...`")
    c.add_argument("--reason", required=True, help="why (kept in the log)")
    c.add_argument("--force", action="store_true", help="promote without a passed gate report (logged as forced)")
    who(c)
    c = command("rollback", "make the previous champion the champion again", _rollback)
    c.add_argument("--reason", required=True, help="why (kept in the log)")
    who(c)
    command("history", "the promotion log: who moved which alias, when, why and on what evidence", _history)
    c = command("verify", "check the log's hash chain and replay, every bundle's digest and every gate report", _verify)
    c.add_argument("--quick", action="store_true", help="skip re-hashing the bundles' files")


def _open(args, create: bool = False):
    from lesionlens.bundle.registry import Registry

    return Registry.open(args.registry, create=create)


def _add(args) -> int:
    if args.champion and args.challenger:
        raise ValueError("--champion and --challenger: choose one")
    registry = _open(args, create=True)
    digest, new = registry.add(args.bundle, who=args.who)
    print(f"{'added' if new else 'already registered:'} {args.bundle} as {digest}")
    if args.challenger:
        registry.assign_challenger(digest, who=args.who, reason=args.reason)
        print(f"challenger: {digest[:12]}")
    if args.champion:
        if registry.state().champion is not None:
            raise ValueError("there is a champion already; promote with a gate report: "
                             "`lesionlens registry promote DIR BUNDLE --gate gate.json --reason ...`")
        registry.promote(digest, reason=args.reason, who=args.who)
        print(f"champion: {digest[:12]} (the first)")
    return 0


def _list(args) -> int:

    print("\n".join(listing_lines(_open(args))))
    return 0


def _challenger(args) -> int:
    registry = _open(args)
    entry = registry.assign_challenger(None if args.bundle == "none" else args.bundle, who=args.who,
                                       reason=args.reason)
    print(f"challenger: {entry.to[:12] if entry.to else 'none'} (log entry {entry.seq})")
    return 0


def _promote(args) -> int:
    registry = _open(args)
    entry = registry.promote(args.bundle, reason=args.reason, gate=args.gate, force=args.force, who=args.who)
    basis = {"gate": f"on gate report {(entry.gate or '')[:12]}", "force": "FORCED, without a passed gate",
             "first": "the first champion"}[entry.basis]
    print(f"champion: {entry.to[:12]} ({basis}); previous: {entry.from_[:12] if entry.from_ else 'none'} "
          f"(log entry {entry.seq})")
    return 0


def _rollback(args) -> int:
    entry = _open(args).rollback(args.reason, who=args.who)
    print(f"rolled back: champion {entry.to[:12]}, previous {entry.from_[:12]} (log entry {entry.seq})")
    return 0


def _history(args) -> int:
    from lesionlens.bundle.promotions import history_lines

    registry = _open(args)
    print("\n".join(history_lines(registry.entries(), registry.names())) or "(no entries)")
    return 0


def _verify(args) -> int:
    result = _open(args).verify(deep=not args.quick)
    print("\n".join(result.lines()))
    return 0 if result.ok else 1


def listing_lines(registry) -> list[str]:
    """``lesionlens registry list``: each bundle with its aliases, name, architecture and figures."""
    from lesionlens.bundle.schema import BundleError

    state = registry.state()
    names = registry.names()
    by_bundle: dict[str, list[str]] = {}
    for alias, digest in state.aliases.items():
        if digest:
            by_bundle.setdefault(digest, []).append(alias)
    out = [f"{'digest':<14}{'aliases':<22}{'name':<34}{'architecture':<20}{'created':<27}val. bal. acc."]
    for digest in state.bundles:
        try:
            card = registry.card(digest, verify=False)
            arch, created = card.architecture, card.created
            figure = card.validation.balanced_accuracy
        except BundleError as e:
            arch, created, figure = f"damaged: {e}", "", None
        shown = f"{figure:.3f}" if isinstance(figure, (int, float)) else "-"
        out.append(f"{digest[:12]:<14}{','.join(by_bundle.get(digest, [])) or '-':<22}{names.get(digest, '?')[:32]:<34}"
                   f"{arch:<20}{created:<27}{shown}")
    return out
