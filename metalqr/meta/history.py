"""Per-iteration history of a training run: save to CSV/JSON, load back, plot."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["History"]


@dataclass
class History:
    """A list of per-iteration records (dicts with the same keys).

    Use ``history["cost_gap_ratio"]`` for one column as an array, :meth:`to_csv`,
    :meth:`to_json`, :meth:`from_json` and :meth:`plot`.
    """

    records: list[dict[str, Any]] = field(default_factory=list)

    def append(self, record: dict[str, Any]) -> None:
        for key, value in record.items():
            if isinstance(value, float) and math.isnan(value):
                raise ValueError(f"history value {key!r} is NaN; records must be finite or inf")
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, column: str) -> np.ndarray:
        return np.array([r[column] for r in self.records])

    @property
    def columns(self) -> list[str]:
        return list(self.records[0]) if self.records else []

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write one row per iteration (header = column names)."""
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.records)

    def to_json(self, path: str | os.PathLike) -> None:
        with open(path, "w") as fh:
            json.dump({"records": self.records}, fh)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "History":
        with open(path) as fh:
            return cls(list(json.load(fh)["records"]))

    def plot(self, column: str = "cost_gap_ratio", ax: Any = None, label: str | None = None,
             logy: bool = False):
        """Plot a column against ``iteration`` with matplotlib; returns the axes."""
        import matplotlib
        if ax is None:
            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
            _, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self["iteration"], self[column], label=label)
        ax.set_xlabel("iteration")
        ax.set_ylabel(column)
        if logy:
            ax.set_yscale("log")
        return ax
