"""Plain-text reporting shared by the console script and the experiment runners.

Private infrastructure (like :mod:`metalqr._validation`): the command line
(:mod:`metalqr.cli`) and the experiment modules (for example :mod:`metalqr.meta.figure1`)
print their result tables through :func:`print_table`, so that no library module has to
import the console script.
"""

from __future__ import annotations

import csv
import io
import sys
from typing import IO, Sequence

__all__ = ["print_table", "format_cell", "csv_text"]


def format_cell(value) -> str:
    """One table cell: floats with 4 significant digits, everything else with ``str``."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_table(rows: Sequence[dict], out: IO[str] | None = None) -> None:
    """Print ``rows`` (dicts with the same keys, in column order) as a right-aligned table.

    Parameters
    ----------
    rows : sequence of dict
        One dict per row; the keys of the first row are the columns. An empty sequence
        prints nothing.
    out : text stream, optional
        Where to print (default ``sys.stdout``).
    """
    out = sys.stdout if out is None else out
    if not rows:
        return
    cols = list(rows[0])
    cells = [[format_cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(str(c)), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(str(c).rjust(w) for c, w in zip(cols, widths)), file=out)
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)), file=out)


def csv_text(rows: Sequence[dict]) -> str:
    r"""Return ``rows`` as CSV text.

    ``rows`` as CSV text (``\n`` line ends): a header with the union of the rows' keys in
    first-seen order, then one line per row (missing cells empty).
    """
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
