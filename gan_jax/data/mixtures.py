"""2-D Gaussian mixtures of the mode-collapse experiments (VEEGAN, PacGAN).

PacGAN (Lin et al. 2018, official code fjxmlzn/PacGAN, synthetic_data_experiments):
  * ring: 8 components, means (cos 2πi/8, sin 2πi/8) (radius 1), std 0.01 per axis;
  * grid: 25 components, means (−4 + 2i, −4 + 2j), i, j ∈ 0..4 (spacing 2), std 0.05
    (the same grid as VEEGAN's notebook);
  equal weights, a training set of 100,000 points drawn once.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Mixture:
    """An isotropic, equally weighted Gaussian mixture in 2-D."""

    name: str
    means: np.ndarray  # [K, 2]
    std: float

    @property
    def num_modes(self) -> int:
        return int(self.means.shape[0])

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n points: a uniform component, then its Gaussian. float32 [n, 2]."""
        comp = rng.integers(0, self.num_modes, size=n)
        pts = self.means[comp] + self.std * rng.standard_normal((n, 2))
        return pts.astype(np.float32)


def ring(num_modes: int = 8, radius: float = 1.0, std: float = 0.01) -> Mixture:
    angles = 2 * np.pi * np.arange(num_modes) / num_modes
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return Mixture("ring", means, std)


def grid(side: int = 5, spacing: float = 2.0, std: float = 0.05) -> Mixture:
    coords = spacing * (np.arange(side) - (side - 1) / 2)
    means = np.stack(np.meshgrid(coords, coords, indexing="ij"), axis=-1).reshape(-1, 2)
    return Mixture("grid", means, std)


MIXTURES = {"ring": ring, "grid": grid}


def get_mixture(name: str) -> Mixture:
    if name not in MIXTURES:
        raise ValueError(f"unknown mixture {name!r}; allowed: {sorted(MIXTURES)}")
    return MIXTURES[name]()


class MixtureSource:
    """A fixed training set drawn once from a mixture (PacGAN: 100,000 points), random access.

    Items are {"x": float32 [2]}; `__getitems__` serves a whole index array at once.
    """

    def __init__(self, mixture: Mixture, num_examples: int, seed: int):
        if num_examples < 1:
            raise ValueError(f"num_examples must be >= 1, got {num_examples}")
        self.mixture = mixture
        self.points = mixture.sample(np.random.default_rng(seed), num_examples)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {"x": self.points[i]}

    def __getitems__(self, idx) -> dict[str, np.ndarray]:
        return {"x": self.points[np.asarray(idx)]}
