"""Methods. Adding a baseline = one file in this folder + one import line below (it registers on import)."""

from baselines import vanilla_fusion  # noqa: F401
from baselines import modal_immune  # noqa: F401
from baselines import modality_dropout  # noqa: F401
from baselines import mmin  # noqa: F401
