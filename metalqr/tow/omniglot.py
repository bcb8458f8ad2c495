"""Omniglot few-shot tasks and the 20 standard one-shot classification runs.

Omniglot (Lake, Salakhutdinov & Tenenbaum, Science 2015) holds handwritten characters of 50
alphabets, 20 drawings of each character by different people, as 105 x 105 binary PNGs in the
layout ``<alphabet>/<character>/<drawing>.png``. The TOW paper (Section 5.1) follows the
usual protocol of MAML / Prototypical Networks: images resized to 28 x 28, training and test
split by alphabet, N-way k-shot tasks whose classes are characters, formed within one alphabet.

* :class:`OmniglotTasks` - task source with the interface of :mod:`metalqr.tow.tasks`
  (``sample(rng, n, train)``, ``n_in``, ``n_out``, ``loss = "ce"``), so that it plugs into
  :func:`~metalqr.tow.make_learner` and :func:`~metalqr.tow.run_experiment` unchanged. It reads
  a folder or the official zips in place (several merged; duplicated drawings, such as Greek
  and Latin present in both ``images_background_small1.zip`` and ``..._small2.zip``, kept
  once), resizes by area averaging, optionally adds rotations by multiples of 90 degrees as
  new characters, and caches the decoded arrays in memory.
* :func:`load_one_shot_runs` / :func:`evaluate_one_shot_runs` - the 20 twenty-way one-shot
  runs (``all_runs.zip``): nearest-neighbour classification of the 20 test drawings among the
  20 training drawings, in pixels, in a learned embedding, or with the modified Hausdorff
  distance baseline of the Omniglot repository; the error is printed beside the published
  figures (:data:`PUBLISHED_ONE_SHOT_ERRORS`).

The full data (30 background and 20 evaluation alphabets) is at
https://github.com/brendenlake/omniglot (``python/images_background.zip``,
``python/images_evaluation.zip``, ``python/one-shot-classification/all_runs.zip``).
Pixel convention: ink = 1, background = 0 (the PNGs draw black ink on white).
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .._validation import (as_float_array, as_rng, check_bool, check_callable, check_choice, check_int,
                           check_size)
from ..exceptions import ValidationError, ValidationTypeError
from .tasks import Task

__all__ = ["OmniglotTasks", "area_resize", "load_omniglot", "OneShotRun", "OneShotResult",
           "load_one_shot_runs", "evaluate_one_shot_runs", "one_shot_run_tasks", "modified_hausdorff",
           "embedding_of", "PUBLISHED_ONE_SHOT_ERRORS", "OMNIGLOT_URL"]

#: Where the full Omniglot set comes from.
OMNIGLOT_URL = "https://github.com/brendenlake/omniglot (folder python/: images_background.zip, " \
               "images_evaluation.zip, one-shot-classification/all_runs.zip)"

#: Published 20-way one-shot error rates on the 20 runs (percent), Lake et al., Science 2015
#: (models learned from the 30-alphabet background set unless the name says otherwise).
PUBLISHED_ONE_SHOT_ERRORS = {
    "people": 4.5,
    "Bayesian program learning (BPL)": 3.3,
    "deep Siamese convnet": 8.0,
    "deep convnet": 13.5,
    "hierarchical deep model": 34.8,
    "modified Hausdorff distance (raw pixels)": 38.8,
    "BPL, 5 background alphabets (subset 1)": 4.3,
    "BPL, 5 background alphabets (subset 2)": 4.0,
    "deep convnet, 5 background alphabets (subset 1)": 24.0,
    "deep convnet, 5 background alphabets (subset 2)": 22.3,
    "chance": 95.0,
}

_RUN_DIR = re.compile(r"^run\d+$")
_ROTATIONS = (0, 90, 180, 270)


# --------------------------------------------------------------------------------------------
# image decoding and resizing
# --------------------------------------------------------------------------------------------

def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Return the area-averaging matrix.

    ``R`` (n_out, n_in): output pixel ``i`` averages the input interval ``[i s, (i + 1) s)``,
    ``s = n_in / n_out``, each input pixel weighted by its overlap.
    """
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return overlap / (n_in / n_out)


def area_resize(images: Any, size: int) -> np.ndarray:
    """Resize square images by area averaging.

    Each output pixel is the mean of the input area it covers, fractional pixels weighted by
    their overlap. Pillow's ``BOX`` filter agrees for integer ratios; for 105 -> 28 (ratio 3.75)
    it weights whole pixels by their centres instead, so it is not used.

    Parameters
    ----------
    images : array_like, shape (h, h) or (n, h, h)
        Real square images.
    size : int
        Output side length, ``1 <= size <= h``.

    Returns
    -------
    ndarray, shape (size, size) or (n, size, size)
        ``R X R'`` with ``R`` the (size, h) area-overlap matrix (rows sum to 1), so the mean
        intensity is preserved exactly.

    Raises
    ------
    ValidationError
        Non-square or non-finite images, or ``size`` outside ``[1, h]``.
    """
    X = as_float_array(images, "images", allow_empty=False)
    if X.ndim not in (2, 3) or X.shape[-1] != X.shape[-2]:
        raise ValidationError(f"images must have shape (h, h) or (n, h, h) (square); got {X.shape}.")
    size = check_int(size, "size", minimum=1, maximum=X.shape[-1])
    R = _area_matrix(X.shape[-1], size)
    return np.einsum("ij,...jk,lk->...il", R, X, R, optimize=True)


def _decode_png(data: bytes, where: str) -> np.ndarray:
    """PNG bytes -> float ink image in [0, 1] (ink = 1), via Pillow (a matplotlib dependency)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as im:
            gray = np.asarray(im.convert("L"), dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ValidationError(f"path: {where} is not a readable PNG image ({exc}).") from None
    return 1.0 - gray / 255.0


# --------------------------------------------------------------------------------------------
# reading the <alphabet>/<character>/<drawing>.png layout from folders and zips
# --------------------------------------------------------------------------------------------

def _as_paths(path: Any, name: str = "path") -> tuple[str, ...]:
    items = [path] if isinstance(path, (str, os.PathLike)) else path
    if not isinstance(items, (list, tuple)) or not items:
        raise ValidationTypeError(f"{name} must be a folder or .zip path, or a non-empty list of them; "
                                  f"got {type(path).__name__}.")
    out = []
    for p in items:
        if not isinstance(p, (str, os.PathLike)):
            raise ValidationTypeError(f"{name} entries must be str or os.PathLike; got {type(p).__name__}.")
        p = os.fspath(p)
        if not os.path.exists(p):
            raise ValidationError(
                f"{name}: {p!r} does not exist. Point {name} at your Omniglot copy: a folder in the "
                f"<alphabet>/<character>/<drawing>.png layout, the official zips, or a folder holding "
                f"them. The full set comes from {OMNIGLOT_URL}.")
        if os.path.isfile(p) and not zipfile.is_zipfile(p):
            raise ValidationError(f"{name}: {p!r} is a file but not a zip archive; pass a folder or a .zip.")
        out.append(os.path.realpath(p))
    return tuple(out)


def _layout_key(parts: Sequence[str]) -> tuple[str, str, str] | None:
    """Return ``(alphabet, character, drawing)`` from a path's components.

    ``(alphabet, character, drawing)`` from a path's components, or None (not a drawing, or a
    file of the one-shot runs ``runNN/...``).
    """
    if len(parts) < 3 or not parts[-1].lower().endswith(".png"):
        return None
    if any(_RUN_DIR.match(p) for p in parts):
        return None
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    return parts[-3], parts[-2], parts[-1]


def _zip_members(zpath: str) -> list[tuple[tuple[str, str, str], str, Callable[[], bytes]]]:
    out = []
    with zipfile.ZipFile(zpath) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            key = _layout_key(info.filename.split("/"))
            if key is not None:
                data = zf.read(info.filename)
                out.append((key, f"{zpath}:{info.filename}", lambda data=data: data))
    return out


def _read_file(p: str) -> bytes:
    with open(p, "rb") as fh:
        return fh.read()


def _walk_files(root: str):
    """Walk every file under ``root`` in sorted order.

    Every file under ``root`` in a deterministic (sorted) order, as ``(parts, f, full)``: the
    folders from ``root`` down (``[]`` at the top), the file name and its full path.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        parts = [] if rel == "." else rel.split(os.sep)
        for f in sorted(filenames):
            yield parts, f, os.path.join(dirpath, f)


def _folder_members(root: str) -> list[tuple[tuple[str, str, str], str, Callable[[], bytes]]]:
    out, zips = [], []
    for parts, f, full in _walk_files(root):
        if not parts and f.lower().endswith(".zip") and f.startswith("images_"):
            zips.append(full)
            continue
        key = _layout_key(parts + [f])
        if key is not None:
            out.append((key, full, lambda p=full: _read_file(p)))
    if not out:                        # a folder that holds the official zips
        for z in zips:
            out += _zip_members(z)
    return out


def _signature(paths: tuple[str, ...]) -> tuple:
    sig = []
    for p in paths:
        if os.path.isfile(p):
            st = os.stat(p)
            sig.append((p, st.st_mtime_ns, st.st_size))
        else:
            for _, f, full in _walk_files(p):
                if f.lower().endswith((".png", ".zip")):
                    st = os.stat(full)
                    sig.append((full, st.st_mtime_ns, st.st_size))
    return tuple(sig)


_CACHE: dict = {}


def load_omniglot(path: Any, size: int = 28) -> dict[str, dict[str, np.ndarray]]:
    """Read Omniglot drawings into ``{alphabet: {character: images (n_drawings, size, size)}}``.

    Parameters
    ----------
    path : str, os.PathLike or list of them
        Folders in the ``<alphabet>/<character>/<drawing>.png`` layout (any wrapper folders
        above ``<alphabet>`` are allowed), official zips read in place, or a folder holding
        ``images_*.zip`` files. Several sources are merged; a drawing present in two of them
        (same alphabet, character and file name) is kept once if the bytes agree. Files of
        the one-shot runs (``runNN/...``) are skipped.
    size : int
        Side of the output images; 105 x 105 drawings are area-averaged to ``size x size``
        (28 in the TOW paper). Ink = 1, background = 0, float32.

    Returns
    -------
    dict
        Alphabets and characters in sorted order. Decoded arrays are cached in memory per
        (sources, file times and sizes, ``size``), so a second call is free.

    Raises
    ------
    ValidationError
        Missing path (the message says where the full set comes from), no drawings found,
        unreadable PNG, non-square images, or a duplicated drawing whose bytes differ.
    """
    paths = _as_paths(path)
    size = check_int(size, "size", minimum=1)
    key = (_signature(paths), size)
    if key in _CACHE:
        return _CACHE[key]
    members = []
    for p in paths:
        members += _zip_members(p) if os.path.isfile(p) else _folder_members(p)
    if not members:
        raise ValidationError(
            f"path: no drawings in the <alphabet>/<character>/<drawing>.png layout under {list(paths)}. "
            f"The full Omniglot set comes from {OMNIGLOT_URL}.")
    seen: dict = {}
    for k, where, read in members:
        data = read()
        if k in seen:
            if seen[k][1] != data:
                raise ValidationError(f"path: drawing {'/'.join(k)} appears in {seen[k][0]} and in {where} "
                                      "with different contents; pass only one of these sources.")
            continue
        seen[k] = (where, data)
    tree: dict = {}
    R = None
    for (a, c, d) in sorted(seen):
        where, data = seen[(a, c, d)]
        img = _decode_png(data, where)
        if img.shape[0] != img.shape[1] or img.shape[0] < size:
            raise ValidationError(f"path: {where} has shape {img.shape}; drawings must be square and at "
                                  f"least size x size = {size} x {size}.")
        if R is None or R.shape[1] != img.shape[0]:
            R = _area_matrix(img.shape[0], size)
        tree.setdefault(a, {}).setdefault(c, []).append((R @ img.astype(np.float64) @ R.T).astype(np.float32))
    out = {a: {c: np.stack(v) for c, v in chars.items()} for a, chars in tree.items()}
    _CACHE.clear()                      # keep one data set in memory
    _CACHE[key] = out
    return out


# --------------------------------------------------------------------------------------------
# the task source
# --------------------------------------------------------------------------------------------

@dataclass
class OmniglotTasks:
    """N-way k-shot Omniglot tasks, split into training and test by alphabet.

    N-way k-shot Omniglot tasks, split into training and test **by alphabet** (TOW paper,
    Section 5.1; Vinyals et al. 2016 / Finn et al. 2017 protocol at 28 x 28).

    Parameters
    ----------
    path : str, os.PathLike or list of them
        Your Omniglot copy (see :func:`load_omniglot`); read lazily on first use.
    n_way, k_shot, k_query : int
        Classes per task, support and query drawings per class (``k_shot + k_query`` at most
        the drawings per character, 20 in Omniglot; drawn without replacement).
    size : int
        Image side after area averaging (28); ``n_in = size**2``.
    rotations : tuple of int
        Subset of ``(0, 90, 180, 270)``: each character rotated by each angle is a class of
        its own (in its alphabet), the usual augmentation. ``(0,)``: no augmentation.
    test_alphabets : int or sequence of str
        Held-out alphabets: a count (chosen by a permutation of the sorted alphabet names
        seeded by ``split_seed``; deterministic) or explicit names. Default 3 of the 8
        alphabets of the reduced background set, leaving 5 for training.
    split_seed : int
        Seed of that permutation.
    cross_alphabet : bool
        False (default, the paper): a task's ``n_way`` classes come from one alphabet, chosen
        uniformly among the split's alphabets. True: classes drawn uniformly from all the
        split's characters.

    Raises
    ------
    ValidationError, ValidationTypeError
        A parameter out of range, named (the data are read, and checked, on first use).

    Notes
    -----
    ``Task.group`` is the alphabet's index in :meth:`alphabet_names` (-1 for cross-alphabet
    tasks); labels are ``0..n_way-1`` in random class order. Images are float64 vectors
    (``size**2``), ink = 1.

    References
    ----------
    TOW paper [nguyen2023tow], Section 5.1 (Omniglot, split by alphabet).
    """

    path: Any
    n_way: int = 5
    k_shot: int = 1
    k_query: int = 5
    size: int = 28
    rotations: tuple = (0,)
    test_alphabets: Any = 3
    split_seed: int = 0
    cross_alphabet: bool = False
    _state: dict = field(default_factory=dict, repr=False, compare=False)

    loss = "ce"

    def __post_init__(self):
        self.path = _as_paths(self.path)
        self.n_way = check_int(self.n_way, "n_way", minimum=2)
        self.k_shot = check_int(self.k_shot, "k_shot", minimum=1)
        self.k_query = check_int(self.k_query, "k_query", minimum=1)
        self.size = check_int(self.size, "size", minimum=1, maximum=105)
        if isinstance(self.rotations, (str, bytes)) or not isinstance(self.rotations, (tuple, list)) \
                or not self.rotations:
            raise ValidationTypeError(f"rotations must be a non-empty tuple of angles from {_ROTATIONS}; "
                                      f"got {self.rotations!r}.")
        rot = tuple(check_choice(r, "rotations", _ROTATIONS) for r in self.rotations)
        if len(set(rot)) != len(rot):
            raise ValidationError(f"rotations must not repeat an angle; got {rot}.")
        self.rotations = rot
        if isinstance(self.test_alphabets, (bool, np.bool_)):
            raise ValidationTypeError("test_alphabets must be a count (int >= 1) or a list of alphabet names; "
                                      "got a bool.")
        if isinstance(self.test_alphabets, (int, np.integer)):
            self.test_alphabets = check_int(self.test_alphabets, "test_alphabets", minimum=1)
        elif isinstance(self.test_alphabets, (list, tuple)) and self.test_alphabets \
                and all(isinstance(a, str) for a in self.test_alphabets):
            if len(set(self.test_alphabets)) != len(self.test_alphabets):
                raise ValidationError(f"test_alphabets repeats a name: {list(self.test_alphabets)}.")
            self.test_alphabets = tuple(self.test_alphabets)
        else:
            raise ValidationTypeError("test_alphabets must be a count (int >= 1) or a non-empty list of alphabet "
                                      f"names; got {self.test_alphabets!r}.")
        self.split_seed = check_int(self.split_seed, "split_seed", minimum=0)
        self.cross_alphabet = check_bool(self.cross_alphabet, "cross_alphabet")

    # ---------------------------------------------------------------- interface
    @property
    def n_in(self) -> int:
        """Input size: ``size**2`` pixels."""
        return self.size * self.size

    @property
    def n_out(self) -> int:
        """Output size: ``n_way`` classes."""
        return self.n_way

    # ---------------------------------------------------------------- data
    def data(self) -> dict[str, dict[str, np.ndarray]]:
        """Return the drawings by alphabet and character (read once, then cached).

        Returns
        -------
        dict
            ``{alphabet: {character: (n_drawings, size, size) float32 ndarray}}``.
        """
        if "data" not in self._state:
            self._state["data"] = load_omniglot(self.path, self.size)
        return self._state["data"]

    def alphabet_names(self) -> list[str]:
        """Return all alphabets, sorted.

        Returns
        -------
        list of str
            The alphabet names (``Task.group`` indexes this list).
        """
        return sorted(self.data())

    def split(self) -> tuple[list[str], list[str]]:
        """Return the training and test alphabets (deterministic).

        Returns
        -------
        train, test : list of str
            The training and the test alphabets, each sorted.
        """
        names = self.alphabet_names()
        if isinstance(self.test_alphabets, tuple):
            for a in self.test_alphabets:
                check_choice(a, "test_alphabets", names)
            test = sorted(self.test_alphabets)
        else:
            if self.test_alphabets >= len(names):
                raise ValidationError(f"test_alphabets = {self.test_alphabets} leaves no training alphabet: the "
                                      f"data has {len(names)} alphabets; use at most {len(names) - 1}.")
            perm = np.random.default_rng(self.split_seed).permutation(len(names))
            test = sorted(names[i] for i in perm[:self.test_alphabets])
        train = [a for a in names if a not in test]
        if not train:
            raise ValidationError("test_alphabets names every alphabet; leave at least one for training.")
        return train, test

    def _pools(self, train: bool):
        key = ("pools", train)
        if key not in self._state:
            data = self.data()
            names = self.alphabet_names()
            chosen = self.split()[0 if train else 1]
            pools = []
            for a in chosen:
                chars = data[a]
                n_draw = min(v.shape[0] for v in chars.values())
                if self.k_shot + self.k_query > n_draw:
                    worst = min(chars, key=lambda c: chars[c].shape[0])
                    raise ValidationError(
                        f"k_shot + k_query = {self.k_shot + self.k_query} exceeds the {n_draw} drawings of "
                        f"character {a}/{worst}; reduce k_query or k_shot.")
                classes = [(chars[c], r) for c in sorted(chars) for r in self.rotations]
                pools.append((a, names.index(a), classes))
            if not self.cross_alphabet:
                for a, _, classes in pools:
                    if len(classes) < self.n_way:
                        raise ValidationError(
                            f"n_way = {self.n_way} exceeds the {len(classes)} classes of alphabet {a!r} "
                            f"({'training' if train else 'test'} split, rotations {self.rotations}). Use "
                            f"cross_alphabet=True, add rotations, reduce n_way, or move {a!r} to the other "
                            f"split via test_alphabets.")
            else:
                total = sum(len(c) for _, _, c in pools)
                if total < self.n_way:
                    raise ValidationError(f"n_way = {self.n_way} exceeds the {total} classes of the "
                                          f"{'training' if train else 'test'} alphabets; reduce n_way.")
            self._state[key] = pools
        return self._state[key]

    def _images(self, cls, idx) -> np.ndarray:
        imgs, angle = cls
        X = imgs[idx]
        if angle:
            X = np.rot90(X, k=angle // 90, axes=(1, 2))
        return X.reshape(len(idx), -1).astype(np.float64)

    def sample(self, rng: np.random.Generator, n: int, train: bool = True) -> list[Task]:
        """Draw ``n`` tasks from the training (``train=True``) or test alphabets.

        Parameters
        ----------
        rng : numpy.random.Generator or int seed
            Source of randomness.
        n : int
            Number of tasks (>= 0).
        train : bool
            Draw from the training alphabets (else the test alphabets).

        Returns
        -------
        list of Task
            ``s`` (n_way * k_shot, size**2), ``y`` labels, ``sq`` (n_way * k_query, size**2),
            ``yq``; ``group`` the alphabet index (-1 across alphabets).

        Raises
        ------
        ValidationError
            Bad arguments, or an alphabet with fewer classes than ``n_way`` (the message
            names it and the fixes).
        """
        rng = as_rng(rng)
        n = check_int(n, "n", minimum=0)
        train = check_bool(train, "train")
        check_size(float(n) * self.n_way * (self.k_shot + self.k_query) * self.n_in, "n",
                   what="float64 entries", alternative="Sample fewer tasks per call.")
        pools = self._pools(train)
        flat = [cls for _, _, classes in pools for cls in classes]
        k = self.k_shot + self.k_query
        tasks = []
        for _ in range(n):
            if self.cross_alphabet:
                classes, group = [flat[i] for i in rng.choice(len(flat), self.n_way, replace=False)], -1.0
            else:
                _, group, cl = pools[int(rng.integers(len(pools)))]
                classes = [cl[i] for i in rng.choice(len(cl), self.n_way, replace=False)]
            s, sq = [], []
            for cls in classes:
                X = self._images(cls, rng.choice(cls[0].shape[0], k, replace=False))
                s.append(X[:self.k_shot])
                sq.append(X[self.k_shot:])
            tasks.append(Task(np.concatenate(s), np.repeat(np.arange(self.n_way), self.k_shot),
                              np.concatenate(sq), np.repeat(np.arange(self.n_way), self.k_query), float(group)))
        return tasks


# --------------------------------------------------------------------------------------------
# the 20 one-shot classification runs
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OneShotRun:  # numpydoc ignore=PR01
    """One 20-way one-shot run (Lake et al. 2015), full-resolution ink images (ink = 1).

    Attributes
    ----------
    name : str
        The run's folder name (``runNN``).
    train : (n_classes, h, h) ndarray
        One drawing per class.
    test : (n_test, h, h) ndarray
        The test drawings.
    labels : (n_test,) ndarray of int
        The 0-based index into ``train`` of each test item's class.
    train_files : tuple of str
        File names of the training drawings, sorted by name.
    test_files : tuple of str
        File names of the test drawings, in the order of ``class_labels.txt``.
    """

    name: str
    train: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    train_files: tuple
    test_files: tuple


def _run_members(root: str) -> dict:
    """Return ``{(runNN, sub, file): reader}`` from a zip or a folder of runs (or of ``all_runs.zip``)."""
    found: dict = {}

    def add(parts, where, read):
        if len(parts) >= 3 and _RUN_DIR.match(parts[-3]) or (len(parts) >= 2 and _RUN_DIR.match(parts[-2])):
            key = tuple(parts[-3:]) if len(parts) >= 3 and _RUN_DIR.match(parts[-3]) else tuple(parts[-2:])
            if key in found:
                raise ValidationError(f"path: {'/'.join(key)} appears twice under {root!r} ({found[key][0]} and "
                                      f"{where}); pass the one copy of the runs you mean.")
            found[key] = (where, read)

    def from_zip(z):
        with zipfile.ZipFile(z) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    data = zf.read(info.filename)
                    add(info.filename.split("/"), f"{z}:{info.filename}", lambda data=data: data)

    if os.path.isfile(root):
        from_zip(root)
        return found
    zips = []
    for parts, f, full in _walk_files(root):
        if not parts and f == "all_runs.zip":
            zips.append(full)
        elif f.lower().endswith((".png", ".txt")):
            add(parts + [f], full, lambda p=full: _read_file(p))
    if not found:
        for z in zips:
            from_zip(z)
    return found


def load_one_shot_runs(path: Any) -> list[OneShotRun]:
    """Read the one-shot runs of Lake et al. (2015).

    Read the one-shot runs (``runNN/training/classXX.png``, ``runNN/test/itemXX.png``,
    ``runNN/class_labels.txt``) of Lake et al. (2015).

    Parameters
    ----------
    path : str or os.PathLike
        ``all_runs.zip`` (read in place), the folder it extracts to, or a folder holding
        ``all_runs.zip``.

    Returns
    -------
    list of OneShotRun
        Sorted by run name. Each line of ``class_labels.txt`` is
        ``runNN/test/itemXX.png runNN/training/classYY.png`` (paths relative to the folder
        above ``runNN``); the label is the position of ``classYY.png`` among the run's sorted
        training files (``YY - 1`` for the standard files: the names are 1-based).

    Raises
    ------
    ValidationError
        Missing path (naming where the runs come from), no runs found, a malformed labels
        line (file and line number), a labels line naming another run or a missing file, a
        test item without a label or labelled twice, unreadable PNGs.
    """
    (root,) = _as_paths(path) if isinstance(path, (str, os.PathLike)) else (None,)
    if root is None:
        raise ValidationTypeError(f"path must be a str or os.PathLike (all_runs.zip or its folder); "
                                  f"got {type(path).__name__}.")
    members = _run_members(root)
    runs = sorted({k[0] for k in members if len(k) == 2 and k[1] == "class_labels.txt"})
    if not runs:
        raise ValidationError(f"path: no runNN/class_labels.txt under {root!r}. The 20 one-shot runs are "
                              f"all_runs.zip from {OMNIGLOT_URL}.")
    out = []
    for run in runs:
        where, read = members[(run, "class_labels.txt")]
        train_files = sorted(k[2] for k in members if len(k) == 3 and k[0] == run and k[1] == "training"
                             and k[2].lower().endswith(".png"))
        test_present = {k[2] for k in members if len(k) == 3 and k[0] == run and k[1] == "test"
                        and k[2].lower().endswith(".png")}
        if not train_files:
            raise ValidationError(f"path: run {run} has no training/*.png files ({where}).")
        pairs = []
        for lineno, line in enumerate(read().decode("utf-8", "replace").splitlines(), 1):
            if not line.strip():
                continue
            tokens = line.split()
            if len(tokens) != 2:
                raise ValidationError(f"path: {where} line {lineno}: expected 'runNN/test/itemXX.png "
                                      f"runNN/training/classYY.png'; got {line!r}.")
            parsed = []
            for tok, sub in zip(tokens, ("test", "training")):
                parts = tok.replace("\\", "/").split("/")
                if len(parts) < 3 or parts[-3] != run or parts[-2] != sub:
                    raise ValidationError(f"path: {where} line {lineno}: {tok!r} is not a file of {run}/{sub}/.")
                if (run, sub, parts[-1]) not in members:
                    raise ValidationError(f"path: {where} line {lineno}: {tok!r} does not exist.")
                parsed.append(parts[-1])
            pairs.append(tuple(parsed))
        test_files = [t for t, _ in pairs]
        if len(set(test_files)) != len(test_files):
            raise ValidationError(f"path: {where} labels a test item twice.")
        if set(test_files) != test_present:
            raise ValidationError(f"path: {where} does not label the test items "
                                  f"{sorted(test_present - set(test_files))}.")
        labels = np.array([train_files.index(c) for _, c in pairs])

        def imgs(sub, files):
            return np.stack([_decode_png(members[(run, sub, f)][1](), members[(run, sub, f)][0]) for f in files])

        out.append(OneShotRun(run, imgs("training", train_files), imgs("test", test_files), labels,
                              tuple(train_files), tuple(test_files)))
    return out


def one_shot_run_tasks(runs: Any, size: int = 28) -> list[Task]:
    """Return the one-shot runs as tasks.

    The runs as :class:`Task` s (support: the training drawings, labels ``0..n_classes-1``;
    query: the test drawings with their labels), resized to ``size x size`` and flattened, so
    that any learner's ``evaluate(x, tasks)`` scores them (accuracy = 1 - error).

    Parameters
    ----------
    runs : list of OneShotRun, or a path accepted by :func:`load_one_shot_runs`
        The runs.
    size : int
        Side of the resized square images.

    Returns
    -------
    list of Task
        One task per run: ``s`` (n_classes, size**2), ``sq`` (n_test, size**2).

    Raises
    ------
    ValidationError
        Malformed runs or ``size``.
    """
    runs = _runs_arg(runs)
    size = check_int(size, "size", minimum=1, maximum=min(r.train.shape[-1] for r in runs))
    return [Task(area_resize(r.train, size).reshape(len(r.train), -1), np.arange(len(r.train)),
                 area_resize(r.test, size).reshape(len(r.test), -1), r.labels.copy(), float(i))
            for i, r in enumerate(runs)]


def _runs_arg(runs) -> list[OneShotRun]:
    if isinstance(runs, (str, os.PathLike)):
        return load_one_shot_runs(runs)
    if isinstance(runs, (list, tuple)) and runs and all(isinstance(r, OneShotRun) for r in runs):
        return list(runs)
    raise ValidationTypeError(f"runs must be a path to all_runs.zip (or its folder) or a non-empty list of "
                              f"OneShotRun; got {type(runs).__name__}.")


def _ink_points(img: np.ndarray) -> np.ndarray:
    """Centred (row, col) coordinates of the ink pixels (as the Omniglot demo's LoadImgAsPoints)."""
    P = np.argwhere(img > 0.5).astype(float)
    if P.size == 0:
        raise ValidationError("images: a drawing has no ink pixels; the modified Hausdorff distance needs some.")
    return P - P.mean(axis=0)


def modified_hausdorff(A: Any, B: Any) -> float:
    """Return the modified Hausdorff distance between two point sets.

    Modified Hausdorff distance (Dubuisson & Jain 1994) between point sets: ``max(mean_a min_b
    |a - b|, mean_b min_a |a - b|)``.

    Parameters
    ----------
    A : array_like, shape (n, d)
        The first point set.
    B : array_like, shape (m, d)
        The second point set.

    Returns
    -------
    float
        The distance (in the points' units).

    Raises
    ------
    ValidationError
        Empty, non-finite or mismatched point sets.
    """
    from scipy.spatial import cKDTree
    A = as_float_array(A, "A", ndim=2, allow_empty=False)
    B = as_float_array(B, "B", ndim=2, shape=(None, A.shape[1]), allow_empty=False)
    return float(max(cKDTree(B).query(A)[0].mean(), cKDTree(A).query(B)[0].mean()))


@dataclass
class OneShotResult:  # numpydoc ignore=PR01
    """Error rates on the Omniglot one-shot runs.

    Attributes
    ----------
    label : str
        The method's name.
    per_run : (n_runs,) ndarray
        Error rate (a fraction) of each run.
    predictions : (n_runs, n_test) ndarray of int
        Predicted class indices.
    run_names : tuple of str
        The runs' names.
    """

    label: str
    per_run: np.ndarray
    predictions: np.ndarray
    run_names: tuple

    @property
    def error(self) -> float:
        """Overall error rate (fraction; mean over runs of equal size)."""
        return float(self.per_run.mean())

    @property
    def ci95(self) -> float:
        """Half-width of the normal 95% interval of the mean error over runs."""
        n = self.per_run.size
        return float(1.96 * self.per_run.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")

    def table(self, others: Sequence["OneShotResult"] = ()) -> str:
        """Return a Markdown table of the published error rates and this result.

        Markdown table: the published error rates (:data:`PUBLISHED_ONE_SHOT_ERRORS`) and
        this result (and ``others``), in percent.

        Parameters
        ----------
        others : sequence of OneShotResult
            More results to list.

        Returns
        -------
        str
            The table.
        """
        rows = ["| method | error (%) | source |", "|---|---|---|"]
        rows += [f"| {k} | {v:.1f} | Lake et al. 2015 |" for k, v in PUBLISHED_ONE_SHOT_ERRORS.items()]
        for r in (self, *others):
            rows.append(f"| {r.label} | {100 * r.error:.1f} +- {100 * r.ci95:.1f} | measured, "
                        f"{r.per_run.size} runs |")
        return "\n".join(rows)


def evaluate_one_shot_runs(runs: Any, embed: Callable | None = None, *, distance: str = "euclidean",
                           size: int = 28, label: str | None = None) -> OneShotResult:
    """Score nearest-neighbour one-shot classification on the 20 runs (Lake et al. 2015).

    Each test drawing gets the class of the nearest training drawing of its run.

    Parameters
    ----------
    runs : path or list of OneShotRun
        ``all_runs.zip``, its folder, or the output of :func:`load_one_shot_runs`.
    embed : callable or None
        ``embed(X) -> features``: ``X`` (n, size**2) float images (ink = 1, area-averaged to
        ``size``), result (n, e). None: raw pixels. For a trained ProtoNet with parameters
        ``x``: ``lambda X: learner.net.predict(x, X)`` (nearest neighbour = nearest prototype
        in one-shot tasks).
    distance : {"euclidean", "modified_hausdorff"}
        Euclidean distance between features, or the modified Hausdorff distance between the
        centred ink-point clouds of the full-resolution drawings (the Omniglot repository's
        baseline, published 38.8%; ``embed`` must be None).
    size : int
        Image side for ``"euclidean"``.
    label : str or None
        Name printed in :meth:`OneShotResult.table`.

    Returns
    -------
    OneShotResult
        Error rate per run and the predictions.

    Raises
    ------
    ValidationError
        Bad arguments, ``embed`` returning a wrong shape or non-finite features.
    """
    distance = check_choice(distance, "distance", ("euclidean", "modified_hausdorff"))
    embed = check_callable(embed, "embed", allow_none=True)
    if distance == "modified_hausdorff" and embed is not None:
        raise ValidationError("embed must be None with distance='modified_hausdorff' (it works on the drawings' "
                              "ink points); use distance='euclidean' to score an embedding.")
    if label is not None and not isinstance(label, str):
        raise ValidationTypeError(f"label must be a str or None; got {type(label).__name__}.")
    runs = _runs_arg(runs)
    preds, per_run = [], []
    if distance == "euclidean":
        tasks = one_shot_run_tasks(runs, size)
        for t in tasks:
            feats = []
            for X, nm in ((t.s, "train"), (t.sq, "test")):
                F = X if embed is None else embed(X)
                F = as_float_array(F, "embed(X)", allow_empty=False)
                if F.ndim != 2 or F.shape[0] != X.shape[0]:
                    raise ValidationError(f"embed(X) must return shape (n, e) with n = {X.shape[0]} rows for "
                                          f"the {nm} images; got {F.shape}.")
                feats.append(F)
            Fs, Fq = feats
            if Fs.shape[1] != Fq.shape[1]:
                raise ValidationError(f"embed(X) returned {Fs.shape[1]} and {Fq.shape[1]} features for two calls; "
                                      "it must be a fixed map.")
            D = np.sum((Fq[:, None, :] - Fs[None, :, :]) ** 2, axis=-1)
            p = np.argmin(D, axis=1)
            preds.append(p)
            per_run.append(np.mean(p != t.yq))
    else:
        from scipy.spatial import cKDTree
        for r in runs:
            P_tr = [_ink_points(im) for im in r.train]
            P_te = [_ink_points(im) for im in r.test]
            T_tr = [cKDTree(P) for P in P_tr]
            T_te = [cKDTree(P) for P in P_te]
            C = np.array([[max(T_tr[j].query(P_te[i])[0].mean(), T_te[i].query(P_tr[j])[0].mean())
                           for j in range(len(P_tr))] for i in range(len(P_te))])
            p = np.argmin(C, axis=1)
            preds.append(p)
            per_run.append(np.mean(p != r.labels))
    if label is None:
        label = {"euclidean": "nearest neighbour, " + ("raw pixels" if embed is None else "embedding")
                 + f" {size}x{size}", "modified_hausdorff": "modified Hausdorff distance"}[distance]
    lengths = {len(p) for p in preds}
    pred_arr = np.array(preds) if len(lengths) == 1 else np.array(preds, dtype=object)
    return OneShotResult(label, np.array(per_run, dtype=float), pred_arr, tuple(r.name for r in runs))


def embedding_of(learner: Any, x: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Return the embedding function of a trained prototypical network.

    The embedding ``X -> learner.net.predict(x, X)`` of a trained :class:`~metalqr.tow.ProtoNet`
    with parameters ``x``, for :func:`evaluate_one_shot_runs` (nearest neighbour in the
    embedding = nearest prototype in a one-shot task).

    Parameters
    ----------
    learner : ProtoNet
        The trained learner.
    x : array_like, shape (D,)
        Its parameters (``D = learner.net.size``).

    Returns
    -------
    callable
        ``X (n, n_in) -> (n, embedding)``.

    Raises
    ------
    ValidationError
        Not a ProtoNet (for MAML, score :func:`one_shot_run_tasks` with ``learner.evaluate``),
        or ``x`` of the wrong size or non-finite.
    """
    from .learner import ProtoNet
    if not isinstance(learner, ProtoNet):
        raise ValidationTypeError(f"learner must be a ProtoNet to give an embedding; got {type(learner).__name__}. "
                                  "For MAML use learner.evaluate(x, one_shot_run_tasks(path)).")
    x = as_float_array(x, "x", shape=(learner.net.size,))
    return lambda X: learner.net.predict(x, as_float_array(X, "X", ndim=2, shape=(None, learner.net.n_in)))
