"""The curriculum designer of Learning to Learn (Singh et al., ICCV 2023), as the authors' notebook
`inter-dataset similarity.ipynb` and `curriculum_utils.py` (GenerateCurriculum, ScoreCurriculum) compute it:

1. a prototype per task: the mean feature vector of the task's training samples;
2. D[i, j] = cosine distance between the prototypes of tasks i and j; each row is divided by its sum;
3. v(c) = the variance of row c of the normalised D (its zero diagonal included), divided by the sum over tasks;
4. generate: start at the task of lowest v (the k lowest give k curricula), then the remaining tasks by
   decreasing distance from that first task;
5. score an order c_1..c_n: S = (1 - v(c_1)) + sum_{i=1..ceil((n-1)/2)} [d(c_i, c_{i+1}) + 1 - d(c_i, c_{n-i+1})]
   with d the normalised D (row c_i).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist


@dataclass(frozen=True)
class Design:
    distance: np.ndarray  # cosine distances between task prototypes
    normalised: np.ndarray  # each row divided by its sum
    v: np.ndarray  # normalised variance of each row of `normalised`

    @classmethod
    def from_features(cls, x: np.ndarray, y: np.ndarray, tasks: Sequence[Sequence[int]]) -> Design:
        return cls.from_distance(distance_matrix(prototypes(x, y, tasks)))

    @classmethod
    def from_distance(cls, distance: np.ndarray) -> Design:
        normalised = distance / distance.sum(axis=1, keepdims=True)
        variance = normalised.var(axis=1)
        return cls(distance, normalised, variance / variance.sum())

    def generate(self, count: int = 1) -> list[list[int]]:
        """The designer's curricula: one per task among the `count` of lowest v."""
        firsts = sorted(range(len(self.v)), key=lambda c: (self.v[c], c))[:count]
        return [
            [c, *sorted((j for j in range(len(self.v)) if j != c), key=lambda j: (-self.normalised[c, j], j))]
            for c in firsts
        ]

    def score(self, order: Sequence[int]) -> float:
        """S of a task order (higher: predicted better)."""
        d, n = self.normalised, len(order)
        s = 1.0 - float(self.v[order[0]])
        for i in range(math.ceil((n - 1) / 2)):
            s += float(d[order[i], order[i + 1]]) + 1.0 - float(d[order[i], order[n - 1 - i]])
        return s


def prototypes(x: np.ndarray, y: np.ndarray, tasks: Sequence[Sequence[int]]) -> np.ndarray:
    """One row per task: the mean of its samples' features."""
    return np.stack([x[np.isin(y, list(task))].mean(axis=0) for task in tasks])


def distance_matrix(protos: np.ndarray) -> np.ndarray:
    """Cosine distances between prototypes (scipy), the diagonal exactly zero."""
    d: np.ndarray = np.asarray(cdist(protos, protos, metric="cosine"))
    np.fill_diagonal(d, 0.0)
    return d
