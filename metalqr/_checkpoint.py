r"""Safe checkpoints and result files: versioned, checksummed, atomically written, locked.

A checkpoint file is one line of header followed by a body::

    metalqr-checkpoint <format version> <kind> <sha256 of body>\n<body: an .npz archive>

The body holds the arrays of the state and a ``__meta__`` entry with everything else
(JSON). :func:`load` re-computes the checksum, so a truncated, empty, garbage or edited
file, a file from another format version or another kind of run, or a state whose
fingerprint (the run's settings) differs, all raise one :class:`~metalqr.CheckpointError`
naming the file and the way out, never a raw traceback and never a changed result.

:func:`atomic_write_bytes` writes through a unique temporary file in the target folder
(so two writers never share a temporary name) and :func:`os.replace`; a kill leaves the
old or the new file. :class:`FolderLock` keeps two runs out of one output folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
from typing import Any

import numpy as np

from .exceptions import CheckpointError

#: Version of the checkpoint file format; bump when the layout of a state changes.
FORMAT_VERSION = 2
_MAGIC = b"metalqr-checkpoint"
_AFRESH = "delete it (or run without --resume / checkpoint) to start afresh"


_UMASK_LOCK = threading.Lock()


def _current_umask() -> int:
    """Return the process umask without changing it for other threads.

    Linux reports it in ``/proc/self/status``; elsewhere it is read by setting and restoring
    it under a lock (a short window in which only this module's writers are serialised).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically through a unique temporary file.

    The file gets the permissions a plain ``open(path, "w")`` would give (``0o666`` less the
    umask), not the owner-only mode of :func:`tempfile.mkstemp`, so a result store can be
    shared by workers and users as the documentation promises.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise CheckpointError(f"cannot write {path!r}: {exc.strerror or exc}; choose a writable "
                              f"checkpoint / output path.") from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise CheckpointError(f"cannot write {path!r}: {exc.strerror or exc}; choose a "
                                  f"writable checkpoint / output path.") from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save(path: str | os.PathLike, kind: str, fingerprint: str, arrays: dict[str, np.ndarray],
         meta: dict[str, Any]) -> None:
    """Save a state: named arrays plus JSON-able ``meta``, tagged with a kind and fingerprint.

    Save a state: named arrays plus JSON-able ``meta``, tagged with ``kind`` (e.g.
    ``"meta_training"``) and the run's ``fingerprint``.
    """
    buf = io.BytesIO()
    full_meta = dict(meta, fingerprint=fingerprint, kind=kind, format_version=FORMAT_VERSION)
    np.savez(buf, __meta__=np.frombuffer(json.dumps(full_meta, sort_keys=True).encode(), np.uint8),
             **{k: np.asarray(v) for k, v in arrays.items()})
    body = buf.getvalue()
    header = b"%s %d %s %s\n" % (_MAGIC, FORMAT_VERSION, kind.encode(),
                                 hashlib.sha256(body).hexdigest().encode())
    atomic_write_bytes(path, header + body)


def load(path: str | os.PathLike, kind: str, fingerprint: str) -> tuple[dict[str, np.ndarray],
                                                                      dict[str, Any]]:
    """Load a state saved by :func:`save`; return ``(arrays, meta)``.

    Raises
    ------
    CheckpointError
        The file cannot be read, is damaged or edited (checksum), is of another format
        version or kind, or belongs to a run with other settings (fingerprint).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path!r} cannot be read ({exc}); {_AFRESH}.") from None
    head, sep, body = data.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 4 or parts[0] != _MAGIC:
        raise CheckpointError(f"checkpoint {path!r} is not a metalqr checkpoint (empty, truncated "
                              f"or overwritten); {_AFRESH}.")
    if parts[1] != str(FORMAT_VERSION).encode():
        raise CheckpointError(f"checkpoint {path!r} has format version {parts[1].decode(errors='replace')}, "
                              f"this metalqr writes version {FORMAT_VERSION}; {_AFRESH}.")
    if parts[2] != kind.encode():
        raise CheckpointError(f"checkpoint {path!r} holds a {parts[2].decode(errors='replace')!r} "
                              f"state, not a {kind!r} one; {_AFRESH}.")
    if hashlib.sha256(body).hexdigest().encode() != parts[3]:
        raise CheckpointError(f"checkpoint {path!r} is damaged or was edited (its checksum does not "
                              f"match its contents); {_AFRESH}.")
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as npz:
            arrays = {k: npz[k].copy() for k in npz.files}
        meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    except Exception as exc:  # a body that passed the checksum but does not parse
        raise CheckpointError(f"checkpoint {path!r} cannot be parsed ({type(exc).__name__}); "
                              f"{_AFRESH}.") from None
    if meta.get("fingerprint") != fingerprint:
        raise CheckpointError(f"checkpoint {path!r} belongs to a different run (its settings, "
                              f"tasks, initial point or seed differ); {_AFRESH}, or use another "
                              f"output folder.")
    return arrays, meta


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """Exclusive use of an output folder by one run (a ``.metalqr.lock`` file holding the owner's pid).

    A lock left by a dead process is taken over; a live owner gives a
    :class:`~metalqr.CheckpointError` that names the folder and the pid.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, ".metalqr.lock")
        self._held = False

    def acquire(self) -> "FolderLock":
        os.makedirs(self.folder, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    with open(self.path) as fh:
                        pid = int(fh.read().strip() or "0")
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _pid_alive(pid):
                    raise CheckpointError(
                        f"output folder {self.folder!r} is in use by another metalqr run (pid "
                        f"{pid}); wait for it, or use another output folder.") from None
                try:  # stale lock (dead owner, or unreadable): take it over
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            self._held = True
            return self
        raise CheckpointError(f"cannot lock output folder {self.folder!r}; another run keeps "
                              f"taking it. Use another output folder.")

    def release(self) -> None:
        if self._held:
            self._held = False
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
