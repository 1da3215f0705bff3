"""Understanding the network: where it looks, how faithful that picture is, what is inside it,
and which shortcuts it takes (``lesionlens explain``).

- :mod:`~lesionlens.explain.cam`: class-activation maps in NumPy and their overlays (torch-free: the server's)
- :mod:`~lesionlens.explain.subject`: a bundle opened for explanation, its layers by name
- :mod:`~lesionlens.explain.attribution`: raw maps by method (pytorch-grad-cam's Grad-CAM family; Captum's
  integrated gradients, occlusion, guided backpropagation) and the random / centred baselines
- :mod:`~lesionlens.explain.agreement`: correlation, rank correlation and SSIM between maps
- :mod:`~lesionlens.explain.faithfulness`: deletion and insertion curves against the baselines
- :mod:`~lesionlens.explain.sanity`: the model-randomisation sanity check (Adebayo et al. 2018)

What the model gets wrong (top losses, most-confused pairs) is part of an evaluation's results:
:mod:`lesionlens.evaluation.interpretation`.
"""
