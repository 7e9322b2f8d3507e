"""Methods. Adding a baseline = one file in this folder + one import line below (it registers on import)."""

from baselines import mmin, modality_dropout, vanilla_fusion  # noqa: F401
