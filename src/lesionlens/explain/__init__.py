"""Understanding the network: where it looks, how faithful that picture is, what is inside it,
and which shortcuts it takes (``lesionlens explain``; :mod:`~lesionlens.explain.run` runs it all,
:mod:`~lesionlens.explain.report` writes the report).

Maps and how far to trust them:
- :mod:`~lesionlens.explain.cam`: class-activation maps in NumPy and their overlays (torch-free: the server's)
- :mod:`~lesionlens.explain.subject`: a bundle opened for explanation, its layers by name
- :mod:`~lesionlens.explain.attribution`: raw maps by method (pytorch-grad-cam's Grad-CAM family; Captum's
  integrated gradients, occlusion, guided backpropagation); :mod:`~lesionlens.explain.baselines`: random
  and centred maps
- :mod:`~lesionlens.explain.agreement`: correlation, rank correlation and SSIM between maps
- :mod:`~lesionlens.explain.faithfulness`: deletion and insertion curves against the baselines
- :mod:`~lesionlens.explain.sanity`: the model-randomisation sanity check (Adebayo et al. 2018)
- :mod:`~lesionlens.explain.focus`: the map's mass on the lesion (masks: :mod:`lesionlens.data.masks`)
- :mod:`~lesionlens.explain.artifacts` and :mod:`~lesionlens.explain.shortcuts`: ink, ruler and colour
  patch counterfactuals on benign images

Inside the network and over a data set:
- :mod:`~lesionlens.explain.features`, :mod:`~lesionlens.explain.filters`, :mod:`~lesionlens.explain.patches`:
  feature maps, first-layer filters, top-9 activating patches cropped to the receptive field
- :mod:`~lesionlens.explain.embedding` and :mod:`~lesionlens.explain.probes`: a t-SNE map of the
  penultimate features and linear probes for nuisance variables (:mod:`~lesionlens.explain.inside` joins
  them into the report's two sections)

What the model gets wrong (top losses, most-confused pairs) is part of an evaluation's results:
:mod:`lesionlens.evaluation.interpretation`.
"""
