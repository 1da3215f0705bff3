"""Where the network looks: class-activation maps (torch-free, :mod:`lesionlens.explain.cam`, used by
the server) and Grad-CAM with the agreement between the two (:mod:`lesionlens.explain.gradcam`).

What the model gets wrong (top losses, most-confused pairs) is part of an evaluation's results:
:mod:`lesionlens.evaluation.interpretation`.
"""
