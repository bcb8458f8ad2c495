"""Per-iteration history of a training run: save to CSV/JSON, load back, plot."""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checkpoint import atomic_write_text
from .._report import csv_text
from .._validation import check_bool, check_choice
from ..exceptions import CheckpointError, ValidationError, ValidationTypeError

__all__ = ["History"]

#: Units of the columns written by :func:`metalqr.meta_policy_optimization`.
UNITS = {"iteration": "outer iteration (0 = initial gain K0)",
         "meta_objective": "cost per step (exact L(K), evaluation only)",
         "cost_gap_ratio": "dimensionless (sum_i J_i(K) - sum_i J_i*) / sum_i J_i*",
         "grad_norm": "Frobenius norm of the gradient estimate (0 at iteration 0)",
         "step": "step size actually taken (0 if rejected)",
         "backtracks": "count", "rejected": "0/1", "seconds": "wall-clock seconds"}


def _check_record(record: Any, index: int | None = None) -> dict:
    where = "record" if index is None else f"records[{index}]"
    if not isinstance(record, dict):
        raise ValidationTypeError(f"{where} must be a dict of column -> number; got "
                                  f"{type(record).__name__}.")
    out = {}
    for key, value in record.items():
        if not isinstance(key, str):
            raise ValidationTypeError(f"{where}: column names must be strings; got {key!r}.")
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ValidationTypeError(f"{where}: history value {key!r} must be a real number; "
                                      f"got {value!r}.")
        if isinstance(value, float) and math.isnan(value):
            raise ValidationError(f"{where}: history value {key!r} is NaN; records must be "
                                  f"finite or inf.")
        out[key] = value.item() if isinstance(value, np.generic) else value
    return out


@dataclass
class History:
    """A list of per-iteration records (dicts with the same keys, real numbers, never NaN).

    Use ``history["cost_gap_ratio"]`` for one column as an array, :meth:`to_csv`,
    :meth:`to_json`, :meth:`from_json` and :meth:`plot`. Histories written by
    :func:`metalqr.meta_policy_optimization` start at iteration 0 (the initial gain) and
    carry the run's settings and units in ``meta``.

    Parameters
    ----------
    records : list of dict, optional
        Records with identical keys; values are real numbers (``inf`` allowed, NaN not).
    meta : dict, optional
        JSON-able description of the run (settings, units, version), written by
        :meth:`to_json`.

    Raises
    ------
    ValidationError, ValidationTypeError
        A record that is not a dict of real numbers, a NaN, or records with different keys.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.records, (str, bytes, dict)) or not hasattr(self.records, "__iter__"):
            raise ValidationTypeError(f"records must be a list of dicts; got "
                                      f"{type(self.records).__name__}.")
        recs = [_check_record(r, i) for i, r in enumerate(self.records)]
        for i, r in enumerate(recs[1:], start=1):
            if set(r) != set(recs[0]):
                raise ValidationError(f"records[{i}] has columns {list(r)} but records[0] has "
                                      f"{list(recs[0])}; all records must have the same columns.")
        self.records = recs
        if not isinstance(self.meta, dict):
            raise ValidationTypeError(f"meta must be a dict; got {type(self.meta).__name__}.")

    def append(self, record: dict[str, Any]) -> None:
        """Append one record (same columns as the others; values real, never NaN).

        Parameters
        ----------
        record : dict of str to float
            One iteration's values.

        Raises
        ------
        ValidationError, ValidationTypeError
            Another set of keys, a value that is not a real number, or a NaN.
        """
        rec = _check_record(record)
        if self.records and set(rec) != set(self.records[0]):
            raise ValidationError(f"record has columns {list(rec)} but the history has "
                                  f"{list(self.records[0])}; all records must have the same columns.")
        self.records.append(rec)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, column: str) -> np.ndarray:
        if not isinstance(column, str):
            raise ValidationTypeError(f"column must be a column name (str); got "
                                      f"{type(column).__name__}.")
        if self.records and column not in self.records[0]:
            check_choice(column, "column", self.columns)
        return np.array([r[column] for r in self.records])

    @property
    def columns(self) -> list[str]:
        """Names of the recorded columns (empty before the first record)."""
        return list(self.records[0]) if self.records else []

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write one row per iteration (header = column names), atomically.

        Parameters
        ----------
        path : str or os.PathLike
            The CSV file.

        Raises
        ------
        ValidationError, ValidationTypeError
            ``path`` not a file path (or an existing folder).
        """
        atomic_write_text(_check_out_path(path), csv_text(self.records))

    def to_json(self, path: str | os.PathLike) -> None:
        """Write ``{"records": [...], "meta": {...}}`` atomically (``inf`` as ``Infinity``).

        Parameters
        ----------
        path : str or os.PathLike
            The JSON file.

        Raises
        ------
        ValidationError, ValidationTypeError
            ``path`` not a file path (or an existing folder).
        """
        atomic_write_text(_check_out_path(path), json.dumps({"records": self.records,
                                                             "meta": self.meta}, default=str))

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "History":
        """Read a file written by :meth:`to_json`.

        Parameters
        ----------
        path : str or os.PathLike
            The JSON file.

        Returns
        -------
        History
            The records and ``meta``.

        Raises
        ------
        CheckpointError
            If the file cannot be read or is not a history file (damaged, truncated, edited
            into an invalid state); the message names the file.
        """
        path = _check_out_path(path)
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            if not isinstance(data, dict) or not isinstance(data.get("records"), list):
                raise ValueError("no 'records' list")
            return cls(list(data["records"]), dict(data.get("meta") or {}))
        except (OSError, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"history file {path!r} cannot be read as a metalqr history "
                                  f"({type(exc).__name__}: {exc}); write it again with "
                                  f"History.to_json.") from None

    def plot(self, column: str = "cost_gap_ratio", ax: Any = None, label: str | None = None,
             logy: bool = False):
        """Plot a column against ``iteration`` (iteration 0 included) with matplotlib.

        Creates a :class:`matplotlib.figure.Figure` with an Agg canvas when ``ax`` is None
        (the global backend is never changed).

        Parameters
        ----------
        column : str
            A column name (see :attr:`columns`).
        ax : matplotlib.axes.Axes, optional
            Where to draw (default: a new figure).
        label : str, optional
            Legend label of the line.
        logy : bool
            Logarithmic y axis.

        Returns
        -------
        matplotlib.axes.Axes
            The axes drawn on.

        Raises
        ------
        ValidationError
            An unknown column (the valid ones are listed).
        """
        if not isinstance(column, str):
            raise ValidationTypeError(f"column must be a column name (str); got "
                                      f"{type(column).__name__}.")
        if not self.records:
            raise ValidationError("column: the history is empty; there is nothing to plot.")
        check_choice(column, "column", self.columns)
        logy = check_bool(logy, "logy")
        if label is not None and not isinstance(label, str):
            raise ValidationTypeError(f"label must be a str or None; got {type(label).__name__}.")
        if ax is None:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
            fig = Figure(figsize=(6, 4))
            FigureCanvasAgg(fig)
            ax = fig.add_subplot(1, 1, 1)
        elif not hasattr(ax, "plot"):
            raise ValidationTypeError(f"ax must be a matplotlib Axes or None; got {type(ax).__name__}.")
        ax.plot(self["iteration"], self[column], label=label)
        ax.set_xlabel("iteration")
        ax.set_ylabel(column)
        if logy:
            ax.set_yscale("log")
        return ax


def _check_out_path(path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise ValidationTypeError(f"path must be a file path (str or os.PathLike); got "
                                  f"{type(path).__name__}.")
    p = os.fspath(path)
    if not isinstance(p, str) or not p.strip() or "\x00" in p:
        raise ValidationError(f"path must be a non-empty file path; got {path!r}.")
    if os.path.isdir(p):
        raise ValidationError(f"path {p!r} is a folder; pass a file path.")
    return p
