"""The result store: one JSON file per run, written atomically, checksummed."""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Iterable, Iterator, Mapping

from .._checkpoint import atomic_write_text
from ..exceptions import CheckpointError, ValidationTypeError
from ._config import normalize_run, run_id
from ._runner import RECORD_FORMAT, RECORD_VERSION

__all__ = ["ResultStore"]


def _digest(record: Mapping[str, Any]) -> str:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class ResultStore:
    """A folder of finished runs: ``<root>/runs/<run_id>.json``, one file per run.

    Each file holds the run's record (configuration, metalqr version, history, summary,
    device) and the sha256 of the record; it is written through a unique temporary file and
    :func:`os.replace`, so a killed writer leaves no partial file and two studies writing to
    one store never corrupt each other (a run present in both is the same run, by id).

    Parameters
    ----------
    root : path
        Folder of the store (created on first write).

    Raises
    ------
    ValidationTypeError
        ``root`` not a path.
    CheckpointError
        ``root`` exists and is not a folder.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        if not isinstance(root, (str, os.PathLike)):
            raise ValidationTypeError(f"store must be a folder path; got {type(root).__name__}.")
        self.root = os.fspath(root)
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise CheckpointError(f"store {self.root!r} exists and is not a folder; choose another "
                                  f"store folder.")
        self.runs_dir = os.path.join(self.root, "runs")

    def __repr__(self) -> str:
        return f"ResultStore({self.root!r})"

    def path(self, rid: str) -> str:
        """Return the file of run ``rid``.

        Parameters
        ----------
        rid : str
            A run id (:func:`run_id`).

        Returns
        -------
        str
            ``<root>/runs/<rid>.json``.
        """
        return os.path.join(self.runs_dir, f"{rid}.json")

    def save(self, record: Mapping[str, Any]) -> str:
        """Write a run's record atomically.

        Parameters
        ----------
        record : mapping
            A record of :func:`execute_run` (with ``run_id`` and ``config``).

        Returns
        -------
        str
            The file written.
        """
        body = {"format": RECORD_FORMAT, "format_version": RECORD_VERSION,
                "sha256": _digest(record), "record": record}
        path = self.path(record["run_id"])
        atomic_write_text(path, json.dumps(body, sort_keys=True))
        return path

    def load(self, rid: str) -> dict[str, Any]:
        """Read run ``rid``'s record.

        Parameters
        ----------
        rid : str
            A run id.

        Returns
        -------
        dict
            The record, checked against its checksum and configuration.

        Raises
        ------
        CheckpointError
            Missing, unreadable, damaged (checksum), of another format, or holding another
            run's configuration; the message names the file.
        """
        path = self.path(rid)
        fix = "rerun the study to redo this run"
        try:
            with open(path, encoding="utf-8") as fh:
                body = json.load(fh)
        except FileNotFoundError:
            raise CheckpointError(f"run file {path!r} does not exist; {fix}.") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise CheckpointError(f"run file {path!r} is damaged or truncated "
                                  f"({type(exc).__name__}); {fix}.") from None
        if (not isinstance(body, dict) or body.get("format") != RECORD_FORMAT
                or not isinstance(body.get("record"), dict)):
            raise CheckpointError(f"run file {path!r} is not a metalqr run record; {fix}.")
        if body.get("format_version") != RECORD_VERSION:
            older = (isinstance(body.get("format_version"), int)
                     and body["format_version"] < RECORD_VERSION)
            raise CheckpointError(
                f"run file {path!r} has record format version {body.get('format_version')!r}, "
                f"this metalqr reads {RECORD_VERSION}"
                + (" (it was written by an older metalqr: version 2 renamed the summary's "
                   "'iterations' to 'n_iterations' and added TOW keys)" if older else "")
                + f"; {fix} (run_study / metalqr sweep moves the old file aside to "
                  f"<id>.json.damaged-<time> and redoes the run).")
        record = body["record"]
        if _digest(record) != body.get("sha256"):
            raise CheckpointError(f"run file {path!r} is damaged or was edited (its checksum "
                                  f"does not match); {fix}.")
        try:
            same = run_id(normalize_run(record["config"]), record["metalqr_version"]) == rid
        except Exception:
            same = False
        if not same or record.get("run_id") != rid:
            raise CheckpointError(f"run file {path!r} holds another run's configuration; {fix}.")
        return record

    def check(self, ids: Iterable[str]) -> tuple[set[str], dict[str, str]]:
        """Return which of ``ids`` are finished and which are damaged.

        Which of ``ids`` are finished: ``(done, damaged)`` where ``damaged`` maps a run id
        to the reason its file could not be used (that file is moved aside to
        ``<id>.json.damaged-<time>`` so that nothing is lost, and the run is to be redone).

        Parameters
        ----------
        ids : iterable of str
            Run ids.

        Returns
        -------
        done : set of str
            The finished runs.
        damaged : dict of str to str
            The damaged runs and why.
        """
        done: set[str] = set()
        damaged: dict[str, str] = {}
        for rid in ids:
            if not os.path.exists(self.path(rid)):
                continue
            try:
                self.load(rid)
            except CheckpointError as err:
                damaged[rid] = str(err)
                try:
                    os.replace(self.path(rid), f"{self.path(rid)}.damaged-{time.time_ns()}")
                except OSError:
                    pass
                continue
            done.add(rid)
        return done, damaged

    def ids(self) -> list[str]:
        """Return the ids of every run file in the store (damaged or not).

        Returns
        -------
        list of str
            Sorted run ids.
        """
        if not os.path.isdir(self.runs_dir):
            return []
        return sorted(f[:-5] for f in os.listdir(self.runs_dir) if f.endswith(".json"))

    def records(self, ids: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """Yield the valid records among ``ids``, skipping damaged files.

        Parameters
        ----------
        ids : iterable of str, optional
            Run ids (default: the whole store).

        Yields
        ------
        dict
            One record per readable run.
        """
        for rid in (self.ids() if ids is None else ids):
            try:
                yield self.load(rid)
            except CheckpointError:
                continue

    def save_study(self, name: str, ids: list[str], configs: list[dict]) -> str:
        """Write the manifest of a study (``<root>/studies/<name>.json``) atomically.

        Parameters
        ----------
        name : str
            The study's name.
        ids : list of str
            Its run ids.
        configs : list of dict
            Their configurations.

        Returns
        -------
        str
            The file written.
        """
        path = os.path.join(self.root, "studies", f"{name}.json")
        atomic_write_text(path, json.dumps({"name": name, "runs": [
            {"run_id": i, "config": c} for i, c in zip(ids, configs)]}, sort_keys=True, indent=1))
        return path
