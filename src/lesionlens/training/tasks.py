"""Which settings each task (``train.task``) can honour: checked before any data is read, so a
combination that cannot run fails at once, with the key to change."""

from __future__ import annotations

from lesionlens.config import ConfigError, RunConfig
from lesionlens.training.mixing import check_mixing
from lesionlens.training.progressive import check_progressive


def check_task(cfg: RunConfig) -> None:
    """Refuse what the run's task cannot do; each task's own check may also settle a setting the
    task decides (the monitored metric of segmentation and regression), and says so."""
    check_mixing(cfg.train, cfg.train.task)
    check_progressive(cfg.train, cfg.train.task)
    if cfg.train.task == "regression":
        from lesionlens.training.regress_fit import check_regression

        return check_regression(cfg)
    if cfg.data.target:
        raise ConfigError(f"data.target ({cfg.data.target}) names the numbers of --task regression; this run's task "
                          f"is {cfg.train.task}")
    if cfg.train.monitor == "val_mae":
        raise ConfigError("train.monitor val_mae needs --task regression")
    if cfg.train.task == "classification":
        if cfg.train.monitor == "val_jaccard":
            raise ConfigError("train.monitor val_jaccard needs --task segmentation or multitask")
        return
    from lesionlens.training.segment_fit import check_segmentation

    check_segmentation(cfg)
