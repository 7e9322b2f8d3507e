"""Methods. Adding a baseline = one file in this folder + one import line below (it registers on import)."""

from baselines import (
    mmin,  # noqa: F401
    modal_immune,  # noqa: F401
    modality_dropout,  # noqa: F401
    vanilla_fusion,  # noqa: F401
)
