"""Information-gain bandit (ModalImmune §3.10, Eq. 16, App. A.5): EXP3.P over modalities.

The feedback for the attacked arm m* is ℓ_m = mean_i (L_task(M) − L_task(M∖{m}))² (Eq. 16), computed with the
current model. EXP3.P needs it in [0, 1] (App. A.5) and the paper wants high-impact modalities attacked more
often (§3.2), so ℓ is used as a *gain* after the scale-free normalisation ℓ / (ℓ + running mean of ℓ)
(0.5 at the average impact; gap #5).

EXP3.P in gain form (Auer et al. 2002; Bubeck & Cesa-Bianchi 2012, §3.3): p = (1 − γ)·softmax(log w) + γ/K;
after pulling arm I with reward x, every arm j gets log w_j += η (x̂_j + β / p_j) with x̂_j = x·[j = I] / p_j and
β = √(ln(K/δ) / (K T)). Learning rate η: ``"paper"`` = min(0.5, ln K / (K T)) as App. C states, or
``"sqrt"`` = √(ln K / (K T)), the usual EXP3 rate. With the paper's rate the weights move very slowly over a
realistic horizon (a few hundred SDL batches), so the arm distribution stays close to uniform; ``"sqrt"``
concentrates within a few hundred rounds.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor


def info_gain(loss_full: Tensor, loss_without: Tensor) -> Tensor:
    """Eq. (16): mean over the batch of the squared per-sample task-loss difference, ``[n], [n] -> []``."""
    return ((loss_full - loss_without) ** 2).mean()


class InfoGainNormalizer:
    """Maps ℓ >= 0 to a reward in [0, 1): ℓ / (ℓ + m), m an exponential running mean of past ℓ (momentum 0.9)."""

    def __init__(self, momentum: float = 0.9) -> None:
        self.momentum, self.mean = momentum, None

    def __call__(self, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"information gain must be finite and >= 0, got {value}")
        self.mean = value if self.mean is None else self.momentum * self.mean + (1 - self.momentum) * value
        return value / (value + self.mean) if value + self.mean > 0 else 0.5


class Exp3P:
    """EXP3.P over ``k`` arms for a horizon of ``horizon`` rounds (see the module docstring)."""

    def __init__(self, k: int, *, horizon: int, gamma: float = 0.05, eta_mode: str = "paper",
                 delta: float = 0.05) -> None:
        if k < 2 or horizon < 1 or not 0 < gamma <= 1 or eta_mode not in ("paper", "sqrt"):
            raise ValueError(f"Exp3P needs k >= 2, horizon >= 1, gamma in (0, 1], eta_mode paper|sqrt; got "
                             f"k={k}, horizon={horizon}, gamma={gamma}, eta_mode={eta_mode!r}")
        self.k, self.gamma = k, gamma
        base = math.log(k) / (k * horizon)
        self.eta = min(0.5, base) if eta_mode == "paper" else math.sqrt(base)
        self.beta = math.sqrt(math.log(k / delta) / (k * horizon))
        self.log_w = np.zeros(k)
        self.counts = np.zeros(k, dtype=int)

    def probabilities(self) -> np.ndarray:
        w = np.exp(self.log_w - self.log_w.max())
        return (1 - self.gamma) * w / w.sum() + self.gamma / self.k

    def select(self, rng: np.random.Generator) -> int:
        return int(rng.choice(self.k, p=self.probabilities()))

    def update(self, arm: int, reward: float) -> None:
        if not 0.0 <= reward <= 1.0:
            raise ValueError(f"EXP3.P rewards must lie in [0, 1], got {reward}")
        p = self.probabilities()
        gain = np.zeros(self.k)
        gain[arm] = reward / p[arm]
        self.log_w += self.eta * (gain + self.beta / p)
        self.counts[arm] += 1
