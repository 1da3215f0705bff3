"""Keeping a served model fresh: watch for drift, retrain on new labelled cases, and let a
challenger replace the champion only through a statistical gate.

    reference.py        a bundle's reference profile: outputs on data it did not train on, thresholds
    drift.py            the two-sample tests of a window against the reference
    thresholds.py       each test's threshold, from false alarms measured on in-distribution windows
    monitor.py          ``lesionlens monitor``: windows of stored cases, tests, performance, staleness
    monitor_result.py   what the monitor found; monitor_report.py: monitor.json and monitor.html
    snapshot.py         the champion's training data + new labelled cases, frozen with a manifest
    retrain.py          ``lesionlens retrain``: snapshot -> train with the champion's recipe -> export -> gate
    gateset.py          a frozen, hashed gate set (``lesionlens gate freeze``)
    gate.py             ``lesionlens gate``: both bundles on the gate set, leakage refused, the decision
    noninferiority.py   the gate's statistics: paired non-inferiority overall and per subgroup
    gate_report.py      gate.json (canonical: its sha256 is the report's digest) and gate.html

Nothing is imported here: import from the modules.
"""
