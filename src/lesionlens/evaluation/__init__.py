"""Metrics, the Evaluation result object, plots."""
