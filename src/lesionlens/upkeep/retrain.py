"""``lesionlens retrain``: train a challenger on the champion's data plus new labelled cases, with
the champion's recipe, and put it in the registry as the challenger.

    registry champion ─┐
    cases export ──────┴─> snapshot (upkeep.snapshot) -> train (the champion's config.yaml, or a
    given one; data = the snapshot) -> export ONNX -> registry add, challenger alias

The operating points are fitted by training on the snapshot's validation partition, which holds
images neither model trained on (the champion's validation images and the new cases' validation
groups); a recipe with ``data.train_on_val`` is refused, since its thresholds would be fitted on
training images. Promotion is a separate, gated step (``lesionlens gate``, then
``lesionlens registry promote``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from lesionlens.bundle.registry import Registry
from lesionlens.config import ConfigError, RunConfig, load_config
from lesionlens.upkeep.gate import GateResult, run_gate
from lesionlens.upkeep.snapshot import Snapshot, build_snapshot

log = logging.getLogger(__name__)


@dataclass
class Retrained:
    snapshot: Snapshot
    bundle: Path
    digest: str  # the challenger's, in the registry
    champion: str
    validation: dict  # the challenger's validation metrics.json
    gate: GateResult | None = None  # with a gate set

    def lines(self) -> list[str]:
        v = self.validation
        out = [*self.snapshot.lines(),
               f"challenger {self.digest[:12]} trained in {self.bundle}: validation balanced accuracy "
               f"{v['balanced_accuracy']:.3f}, macro AUC {v['macro_auc']:.3f} ({v['n_images']:,} held-out images)",
               f"registered as the challenger; the champion is {self.champion[:12]}"]
        if self.gate is not None:
            report = self.gate.files.get("json")
            out += self.gate.lines()
            if self.gate.decision == "pass" and report is not None:
                out.append(f"promote it: lesionlens registry promote REGISTRY challenger --gate {report} "
                           "--reason \"...\"")
        return out


def recipe(champion_bundle: Path, snapshot: Snapshot, config: str | Path | None, seed: int | None,
           overrides: dict | None = None) -> RunConfig:
    """The champion's configuration (or ``config``), pointed at the snapshot."""
    cfg = load_config(config or champion_bundle / "config.yaml", overrides=overrides)
    cfg.data.path, cfg.data.format, cfg.data.images, cfg.data.group_column = str(snapshot.table), "csv", None, "group"
    if seed is not None:
        cfg.train.seed = seed
    if cfg.data.train_on_val:
        raise ConfigError("data.train_on_val: a challenger's operating points must be fitted on images it did not "
                          "train on; retrain with a recipe that keeps validation held out")
    return cfg


def retrain(registry_dir: str | Path, cases: str | Path, out: str | Path, config: str | Path | None = None,
            seed: int | None = None, overrides: dict | None = None, gate_set: str | Path | None = None,
            progress: bool = True) -> Retrained:
    """Snapshot, train, export and register a challenger (see the module's docstring); with a
    ``gate_set``, gate it against the champion into ``out/gate``."""
    from lesionlens.export.onnx import export_bundle
    from lesionlens.training.fit import train

    out = Path(out)
    registry = Registry.open(registry_dir)
    state = registry.state()
    if state.champion is None:
        raise ValueError(f"{registry.root}: no champion to retrain from; `lesionlens registry add DIR BUNDLE "
                         "--champion --reason ...` makes the first")
    champion = registry.card(state.champion)
    base = load_config(config or champion.path / "config.yaml")
    seed = base.train.seed if seed is None else seed
    snapshot = build_snapshot(champion, state.champion, cases, out / "snapshot", base.data.val_fraction, seed)
    log.info("%s", "\n".join(snapshot.lines()))
    cfg = recipe(champion.path, snapshot, config, seed, overrides)
    result = train(cfg, out / "challenger", progress=progress)
    export_bundle(out / "challenger")
    digest, _ = registry.add(out / "challenger", name=f"retrained-{snapshot.digest[:8]}")
    registry.assign_challenger(digest, reason=f"retrained on snapshot {snapshot.digest[:16]}")
    gate = None
    if gate_set is not None:
        gate = run_gate(registry.bundle_path(state.champion), registry.bundle_path(digest), gate_set, out / "gate",
                        cache_dir=cfg.data.cache_dir, progress=progress)
    return Retrained(snapshot, out / "challenger", digest, state.champion, result.validation, gate)
