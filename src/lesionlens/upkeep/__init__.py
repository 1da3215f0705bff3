"""Keeping a deployed model fresh: drift monitoring (``monitor``, ``reference``, ``drift``,
``thresholds``), and, from the other parts of issue 14, retraining and the promotion gate."""
