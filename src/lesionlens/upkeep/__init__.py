"""Keeping a served model fresh: watch for drift, retrain on new labelled cases, and let a
challenger replace the champion only through a statistical gate.

    snapshot.py   the champion's training data + new labelled cases, frozen with a manifest
    retrain.py    ``lesionlens retrain``: snapshot -> train with the champion's recipe -> export -> gate
"""
