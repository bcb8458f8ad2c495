"""Few-shot task sources that run offline: skewed sinusoid regression (as in TR-MAML)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SinusoidTasks", "Task"]


@dataclass
class Task:
    """One regression task: support ``(s, y)`` and query ``(sq, yq)`` sets and its amplitude."""

    s: np.ndarray
    y: np.ndarray
    sq: np.ndarray
    yq: np.ndarray
    amplitude: float


@dataclass
class SinusoidTasks:
    """``y = A sin(s - phase)``, ``s ~ U[-5, 5]``, phase ``~ U[0, pi]``.

    Training amplitudes are skewed: with probability ``1 - rare_fraction`` from
    ``U[0.1, split]`` and otherwise from ``U[split, 5]``; test amplitudes cover
    ``U[0.1, 5]`` uniformly, so a learner that neglects the rare large-amplitude tasks is
    penalised at test time (the TR-MAML setting)."""

    k_shot: int = 5
    k_query: int = 10
    split: float = 1.0
    rare_fraction: float = 0.1

    def sample(self, rng: np.random.Generator, n: int, train: bool = True) -> list[Task]:
        tasks = []
        for _ in range(n):
            if train and rng.uniform() >= self.rare_fraction:
                amp = rng.uniform(0.1, self.split)
            elif train:
                amp = rng.uniform(self.split, 5.0)
            else:
                amp = rng.uniform(0.1, 5.0)
            phase = rng.uniform(0.0, np.pi)
            s = rng.uniform(-5, 5, (self.k_shot + self.k_query, 1))
            y = amp * np.sin(s - phase)
            tasks.append(Task(s[:self.k_shot], y[:self.k_shot], s[self.k_shot:], y[self.k_shot:], amp))
        return tasks
