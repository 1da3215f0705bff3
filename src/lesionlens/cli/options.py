"""Command-line flags derived from the typed configuration (:mod:`lesionlens.config`).

A setting declared with ``option(...)`` becomes a flag with its name, type, choices (from its
``Literal``), help text and default taken from the field, so it is written in one place. Flags
default to None here: a flag left out keeps the value of the YAML file or the built-in default.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from lesionlens.config import parse_assignment, settings

GROUP_TITLES = {"data": "data", "model": "model", "train": "training", "segment": "segmentation",
                "regression": "regression", "volume": "volumes (3D)"}
GROUP_ORDER = ("data", "model", "transfer learning", "training", "distributed", "segmentation", "regression",
               "volumes (3D)")


def flag_name(key: str, f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + key.partition(".")[2].replace("_", "-")


def describe_default(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def add_setting(parser: argparse.ArgumentParser | argparse._ArgumentGroup, key: str, *, help: str | None = None,
                default: Any = None, **kwargs: Any) -> str:
    """Add the flag of setting ``key`` (``"train.lr"``) to ``parser``; returns its destination.
    ``help`` replaces the setting's own help text, for a command that uses it differently."""
    fields = {k: (f, hint) for k, f, hint in settings()}
    f, hint = fields[key]
    base = _without_none(hint)
    text = help or f.metadata.get("help", "")
    if help is None and f.default is not None:
        text += f" (default {describe_default(f.default)})"
    spec: dict[str, Any] = {"help": text, "default": default}
    if typing.get_origin(base) is typing.Literal:
        spec["choices"] = list(typing.get_args(base))
    elif base is bool:
        spec["action"] = argparse.BooleanOptionalAction
    elif base in (int, float, str):
        spec["type"] = base
        spec["metavar"] = flag_name(key, f).lstrip("-").replace("-", "_").upper()
    else:
        raise TypeError(f"{key}: a {hint} setting cannot be a flag; it is set with --set {key}=VALUE")
    spec.update(kwargs)
    dest = key.replace(".", "__")
    parser.add_argument(flag_name(key, f), dest=dest, **spec)
    return dest


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Every setting marked for the command line, in the argument groups of its section."""
    groups = {title: parser.add_argument_group(title) for title in GROUP_ORDER}
    keys = []
    for key, f, _ in settings():
        if f.metadata.get("cli"):
            group = f.metadata.get("group") or GROUP_TITLES[key.partition(".")[0]]
            add_setting(groups[group], key)
            keys.append(key)
    parser.set_defaults(config_keys=keys)


def config_overrides(args: argparse.Namespace, keys: list[str] | None = None) -> dict[str, Any]:
    """The settings the command line gave: ``--set KEY=VALUE`` first, then the flags (a flag wins)."""
    overrides = dict(parse_assignment(s) for s in getattr(args, "set", None) or [])
    for key in keys if keys is not None else getattr(args, "config_keys", []):
        value = getattr(args, key.replace(".", "__"), None)
        if value is not None:
            overrides[key] = value
    return overrides


def add_set_and_config(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--config", type=Path,
                        help=f"YAML file of {what} (`lesionlens config` prints a template)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any setting by name, e.g. --set augment.rotation=90 (repeatable)")


def _without_none(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint

