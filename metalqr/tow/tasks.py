"""Few-shot task sources that run offline (Section 5 of the TOW paper at CPU scale).

Few-shot task sources that run offline on a laptop (Section 5 of the TOW paper at CPU scale): skewed
sinusoid regression (as in TR-MAML), synthetic hierarchical N-way k-shot classification with
imbalanced "alphabets", its any-shot variant (Section 5.2), N-way k-shot from scikit-learn's bundled
digits (optional extra), and a loader for image folders in the Omniglot / mini-ImageNet layout
``root/{train,val,test}/<class>/*.png``.

Every source has ``sample(rng, n, train=True) -> list[Task]``; classification tasks carry
integer labels ``0..N-1`` in a random class order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .._validation import as_float_array, as_rng, as_seed, check_bool, check_int, check_real, check_size
from ..exceptions import BackendUnavailableError, ValidationError, ValidationTypeError

#: One line telling a user how to get the digits extra (metalqr is installed from a clone).
DIGITS_HINT = ("DigitsTasks (--source digits) needs scikit-learn, which is not installed: from a clone of "
               "metalqr run  pip install \".[digits]\"  (or pip install scikit-learn).")

__all__ = ["Task", "SinusoidTasks", "HierarchicalClassificationTasks", "AnyShotTasks", "DigitsTasks",
           "ImageFolderTasks", "DIGITS_HINT"]


def _targets(value, name: str, n: int) -> np.ndarray:
    """Regression targets (n, C) real, or classification labels (n,) integers >= 0."""
    raw = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if raw.ndim == 1 and raw.dtype.kind in "iu":
        if raw.shape[0] != n:
            raise ValidationError(f"{name} has {raw.shape[0]} labels but its inputs have {n} rows; they "
                                  f"must agree.")
        if raw.size and raw.min() < 0:
            raise ValidationError(f"{name} labels must be integers >= 0; got {raw.min()}.")
        return raw.astype(np.int64, copy=False)
    if raw.ndim == 1 and raw.dtype.kind not in "c?b":
        raise ValidationError(f"{name} must be integer class labels (n,) or real regression targets "
                              f"(n, C); got a 1-D {raw.dtype} array (use .astype(int) for labels or "
                              f".reshape(-1, 1) for scalar targets).")
    arr = as_float_array(raw, name, ndim=2)
    if arr.shape[0] != n or arr.shape[1] < 1:
        raise ValidationError(f"{name} must have shape ({n}, C>=1) to match its inputs; got {arr.shape}.")
    return arr


@dataclass
class Task:
    """One few-shot task: support and query sets and a group.

    One few-shot task: support ``(s, y)`` and query ``(sq, yq)`` sets, and ``group``: the
    amplitude of a sinusoid task or the alphabet of a classification task (for analysis).

    Parameters
    ----------
    s : (n_s, n_in) array_like of float
        Support inputs (at least one row, finite, real).
    y : (n_s, C) real targets, or (n_s,) int labels >= 0
        Support outputs.
    sq : (n_q, n_in) array_like of float
        Query inputs (at least one row, finite, real).
    yq : (n_q, C) real targets, or (n_q,) int labels >= 0
        Query outputs (of the same kind as ``y``).
    group : float
        Amplitude or alphabet index, for analysis only.

    Raises
    ------
    ValidationError
        Malformed or inconsistent arrays.
    """

    s: np.ndarray
    y: np.ndarray
    sq: np.ndarray
    yq: np.ndarray
    group: float = 0.0

    def __post_init__(self) -> None:
        self.s = as_float_array(self.s, "s", ndim=2, allow_empty=False)
        self.sq = as_float_array(self.sq, "sq", ndim=2, allow_empty=False)
        if self.sq.shape[1] != self.s.shape[1]:
            raise ValidationError(f"sq must have {self.s.shape[1]} columns like s; got {self.sq.shape[1]}.")
        self.y = _targets(self.y, "y", self.s.shape[0])
        self.yq = _targets(self.yq, "yq", self.sq.shape[0])
        if self.y.ndim != self.yq.ndim or (self.y.ndim == 2 and self.y.shape[1] != self.yq.shape[1]):
            raise ValidationError(f"yq must be of the same kind and width as y; got shapes {self.yq.shape} "
                                  f"and {self.y.shape}.")
        self.group = check_real(self.group, "group")

    @property
    def is_classification(self) -> bool:
        """Whether the targets are class labels (1-D ``y``) rather than regression targets."""
        return self.y.ndim == 1


def _sample_args(rng, n, train, entries_per_task: float, who: str):
    """Validate the arguments of a source's ``sample`` and refuse huge requests."""
    rng = as_rng(rng)
    n = check_int(n, "n", minimum=1)
    train = check_bool(train, "train")
    check_size(float(n) * entries_per_task, f"{who}.sample(n={n})", what="float64 entries",
               alternative="Sample fewer tasks per call.")
    return rng, n, train


@dataclass
class SinusoidTasks:
    """``y = A sin(s - phase)``, ``s ~ U[-5, 5]``, phase ``~ U[0, pi]``.

    Training amplitudes are skewed: with probability ``1 - rare_fraction`` from
    ``U[0.1, split]`` and otherwise from ``U[split, 5]``; test amplitudes cover
    ``U[0.1, 5]`` uniformly, so a learner that neglects the rare large-amplitude tasks is
    penalised at test time (the TR-MAML setting).

    Parameters
    ----------
    k_shot, k_query : int, >= 1
        Support and query examples per task.
    split : float in [0.1, 5]
        Amplitude that separates common from rare training tasks.
    rare_fraction : float in [0, 1]
        Probability of a rare (large-amplitude) training task.

    Raises
    ------
    ValidationError
        An argument out of range or of the wrong type.
    """

    k_shot: int = 5
    k_query: int = 10
    split: float = 1.0
    rare_fraction: float = 0.1

    n_in = 1
    n_out = 1
    loss = "mse"

    def __post_init__(self) -> None:
        self.k_shot = check_int(self.k_shot, "k_shot", minimum=1)
        self.k_query = check_int(self.k_query, "k_query", minimum=1)
        self.split = check_real(self.split, "split", minimum=0.1, maximum=5.0)
        self.rare_fraction = check_real(self.rare_fraction, "rare_fraction", minimum=0.0, maximum=1.0)

    def sample(self, rng: np.random.Generator, n: int, train: bool = True) -> list[Task]:
        """Draw ``n`` tasks from the training or the test distribution.

        Parameters
        ----------
        rng : numpy.random.Generator or int seed
            Source of randomness.
        n : int, >= 1
            Number of tasks.
        train : bool
            Draw from the training (skewed) or the test amplitude distribution.

        Returns
        -------
        list of Task
            ``n`` tasks; ``group`` is the amplitude.

        Raises
        ------
        ValidationError, ValidationTypeError
            A malformed argument, named.
        """
        rng, n, train = _sample_args(rng, n, train, 2.0 * (self.k_shot + self.k_query), "SinusoidTasks")
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


def _split_task(classes: list, shots, k_query: int, rng, group) -> Task:
    """Build an N-way task from per-class example arrays.

    ``shots[j]`` support and ``k_query`` query examples of class ``classes[j]``, labels
    ``0..N-1``.
    """
    s, y, sq, yq = [], [], [], []
    for label, (pool, k) in enumerate(zip(classes, shots)):
        idx = rng.choice(len(pool), size=k + k_query, replace=len(pool) < k + k_query)
        s.append(pool[idx[:k]])
        sq.append(pool[idx[k:]])
        y += [label] * k
        yq += [label] * k_query
    return Task(np.concatenate(s), np.array(y), np.concatenate(sq), np.array(yq), group)


@dataclass
class HierarchicalClassificationTasks:
    """Synthetic "alphabets": ``n_alphabets`` groups of ``n_chars`` related classes.

    Alphabet ``a`` has a random linear map ``Phi_a`` (``dim x latent``) and an offset; class
    ``c`` of alphabet ``a`` has a latent code ``z_c``; examples are
    ``Phi_a (z_c + within * noise) + noise_level * noise``. Classes of one alphabet share
    ``Phi_a`` and so are related (a task draws its ``n_way`` classes from one alphabet, as in
    Omniglot). The first ``train_fraction`` of each alphabet's classes are for training, the
    rest for testing. Training alphabets are imbalanced: alphabet ``a`` is drawn with
    probability proportional to ``imbalance**a`` (a few alphabets dominate); test tasks draw
    alphabets uniformly.

    Parameters
    ----------
    n_way : int, >= 2
        Classes per task; at most the classes per alphabet of the smaller split.
    k_shot, k_query : int, >= 1
        Support and query examples per class.
    n_alphabets : int, >= 1
        Alphabets.
    n_chars : int, >= 2
        Classes per alphabet.
    dim, latent : int, >= 1
        Example and latent dimensions.
    within, noise_level : float, >= 0
        Within-class spread (latent) and observation noise.
    imbalance : float, > 0
        Ratio of successive training-alphabet probabilities.
    train_fraction : float in (0, 1)
        Fraction of each alphabet's classes used for training.
    rng : int seed >= 0 or Generator
        Seed of the synthetic world (maps, offsets, codes); a Generator gives one draw,
        stored as the int ``rng`` so that the world can be rebuilt (``0`` by default).

    Raises
    ------
    ValidationError
        An argument out of range, or ``n_way`` larger than a split.
    """

    n_way: int = 5
    k_shot: int = 1
    k_query: int = 5
    n_alphabets: int = 10
    n_chars: int = 20
    dim: int = 16
    latent: int = 4
    within: float = 0.35
    noise_level: float = 0.1
    imbalance: float = 0.6
    train_fraction: float = 0.7
    rng: int = 0
    _data: dict = field(default_factory=dict, repr=False)

    loss = "ce"

    def __post_init__(self) -> None:
        self.n_way = check_int(self.n_way, "n_way", minimum=2)
        self.k_shot = check_int(self.k_shot, "k_shot", minimum=1)
        self.k_query = check_int(self.k_query, "k_query", minimum=1)
        self.n_alphabets = check_int(self.n_alphabets, "n_alphabets", minimum=1)
        self.n_chars = check_int(self.n_chars, "n_chars", minimum=2)
        self.dim = check_int(self.dim, "dim", minimum=1)
        self.latent = check_int(self.latent, "latent", minimum=1)
        self.within = check_real(self.within, "within", minimum=0.0)
        self.noise_level = check_real(self.noise_level, "noise_level", minimum=0.0)
        self.imbalance = check_real(self.imbalance, "imbalance", minimum=0.0, min_inclusive=False)
        self.train_fraction = check_real(self.train_fraction, "train_fraction", minimum=0.0, maximum=1.0,
                                         min_inclusive=False, max_inclusive=False)
        self.rng = as_seed(self.rng, "rng")
        check_size(float(self.n_alphabets) * (self.dim + self.n_chars) * self.latent,
                   "HierarchicalClassificationTasks", what="float64 entries",
                   alternative="Use fewer alphabets, characters or dimensions.")
        with np.errstate(over="ignore", under="ignore"):
            p = self.imbalance ** np.arange(self.n_alphabets, dtype=float)
        if not (np.all(np.isfinite(p)) and p.sum() > 0 and np.isfinite(p.sum())):
            raise ValidationError(f"imbalance={self.imbalance!r} ** (n_alphabets - 1) is outside the float "
                                  f"range; choose imbalance closer to 1 or fewer alphabets.")
        n_train = int(round(self.train_fraction * self.n_chars))
        smaller = min(n_train, self.n_chars - n_train)
        if smaller < self.n_way:
            raise ValidationError(
                f"n_way={self.n_way} exceeds the classes per alphabet in the smaller split ({n_train} "
                f"training, {self.n_chars - n_train} test of n_chars={self.n_chars} at "
                f"train_fraction={self.train_fraction:g}); lower n_way or raise n_chars.")

    @property
    def n_in(self) -> int:
        """Input size: the feature dimension ``dim``."""
        return self.dim

    @property
    def n_out(self) -> int:
        """Output size: ``n_way`` classes."""
        return self.n_way

    def _world(self):
        if not self._data:
            rng = np.random.default_rng([self.rng, 7])
            Phi = rng.standard_normal((self.n_alphabets, self.dim, self.latent)) / np.sqrt(self.latent)
            offset = 0.5 * rng.standard_normal((self.n_alphabets, self.dim))
            codes = rng.standard_normal((self.n_alphabets, self.n_chars, self.latent))
            self._data.update(Phi=Phi, offset=offset, codes=codes)
        return self._data

    def _examples(self, rng, a: int, c: int, n: int) -> np.ndarray:
        w = self._world()
        z = w["codes"][a, c] + self.within * rng.standard_normal((n, self.latent))
        return z @ w["Phi"][a].T + w["offset"][a] + self.noise_level * rng.standard_normal((n, self.dim))

    def _alphabet_probs(self, train: bool) -> np.ndarray:
        p = self.imbalance ** np.arange(self.n_alphabets) if train else np.ones(self.n_alphabets)
        return p / p.sum()

    def _shots(self, rng) -> list[int]:
        return [self.k_shot] * self.n_way

    def _max_shot(self) -> int:
        return self.k_shot

    def sample(self, rng: np.random.Generator, n: int, train: bool = True) -> list[Task]:
        """Draw ``n`` tasks from the training or the test split.

        Parameters
        ----------
        rng : numpy.random.Generator or int seed
            Source of randomness.
        n : int, >= 1
            Number of tasks.
        train : bool
            Draw from the training (imbalanced alphabets) or the test (uniform alphabets,
            held-out classes) split.

        Returns
        -------
        list of Task
            ``n`` tasks; ``group`` is the alphabet index.

        Raises
        ------
        ValidationError, ValidationTypeError
            A malformed argument, named.
        """
        rng, n, train = _sample_args(rng, n, train, float(self.n_way) * (self._max_shot() + self.k_query)
                                     * self.dim, type(self).__name__)
        n_train = int(round(self.train_fraction * self.n_chars))
        pool = np.arange(n_train) if train else np.arange(n_train, self.n_chars)
        if pool.size < self.n_way:
            raise ValidationError(f"only {pool.size} classes per alphabet in this split; need n_way={self.n_way}.")
        probs = self._alphabet_probs(train)
        tasks = []
        for _ in range(n):
            a = int(rng.choice(self.n_alphabets, p=probs))
            chars = rng.choice(pool, size=self.n_way, replace=False)
            shots = self._shots(rng)
            classes = [self._examples(rng, a, int(c), k + self.k_query) for c, k in zip(chars, shots)]
            tasks.append(_split_task_from_fresh(classes, shots, a))
        return tasks


def _split_task_from_fresh(classes: list, shots: list[int], group) -> Task:
    """Fresh examples per class: the first ``shots[j]`` are support, the rest query."""
    s = np.concatenate([X[:k] for X, k in zip(classes, shots)])
    sq = np.concatenate([X[k:] for X, k in zip(classes, shots)])
    y = np.concatenate([[j] * k for j, k in enumerate(shots)]).astype(int)
    yq = np.concatenate([[j] * (len(X) - k) for j, (X, k) in enumerate(zip(classes, shots))]).astype(int)
    return Task(s, y, sq, yq, group)


@dataclass
class AnyShotTasks(HierarchicalClassificationTasks):
    """Any-shot variant of the hierarchical tasks (Section 5.2 of the TOW paper).

    Any-shot variant (Section 5.2 of the TOW paper): every class of every task has its own
    number of support examples, uniform in ``[1, max_shot]``, so tasks differ in how much
    evidence they carry as well as in their alphabet.

    Parameters
    ----------
    n_way : int, >= 2
        Classes per task (as in :class:`HierarchicalClassificationTasks`).
    k_shot : int, >= 1
        Not used (each class draws its own shot count).
    k_query : int, >= 1
        Query examples per class.
    n_alphabets : int, >= 1
        Alphabets.
    n_chars : int, >= 2
        Classes per alphabet.
    dim, latent : int, >= 1
        Example and latent dimensions.
    within, noise_level : float, >= 0
        Within-class spread (latent) and observation noise.
    imbalance : float, > 0
        Ratio of successive training-alphabet probabilities.
    train_fraction : float in (0, 1)
        Fraction of each alphabet's classes used for training.
    rng : int seed >= 0 or Generator
        The synthetic world's seed, as in :class:`HierarchicalClassificationTasks`.
    max_shot : int, >= 1
        Largest number of support examples of a class (default 5, as in ``metalqr tow`` and
        the results of docs/tow.md).

    Raises
    ------
    ValidationError
        An argument out of range, or ``n_way`` larger than a split.

    References
    ----------
    TOW paper [nguyen2023tow], Section 5.2 (any-shot classification).
    """

    max_shot: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        self.max_shot = check_int(self.max_shot, "max_shot", minimum=1)

    def _max_shot(self) -> int:
        return self.max_shot

    def _shots(self, rng) -> list[int]:
        return [int(k) for k in rng.integers(1, self.max_shot + 1, size=self.n_way)]


@dataclass
class DigitsTasks:
    """N-way k-shot tasks from scikit-learn's 8x8 digits.

    N-way k-shot tasks from scikit-learn's bundled 8x8 digits (optional extra: ``pip install
    ".[digits]"`` from a clone): training tasks use the digits in ``train_classes``, test tasks
    the others (so ``n_way`` is at most the smaller split, 3 by default).

    Parameters
    ----------
    n_way : int, >= 2
        Classes per task.
    k_shot, k_query : int, >= 1
        Support and query examples per class.
    train_classes : tuple of distinct ints in 0..9
        The digits of the training tasks (the test tasks use the others).

    Raises
    ------
    ValidationError
        An argument out of range, or ``n_way`` larger than a split.
    BackendUnavailableError
        At sampling, when scikit-learn is not installed (the message says how to install it).
    """

    n_way: int = 3
    k_shot: int = 1
    k_query: int = 5
    train_classes: tuple = (0, 1, 2, 3, 4, 5, 6)

    n_in = 64
    loss = "ce"

    def __post_init__(self) -> None:
        self.n_way = check_int(self.n_way, "n_way", minimum=2)
        self.k_shot = check_int(self.k_shot, "k_shot", minimum=1)
        self.k_query = check_int(self.k_query, "k_query", minimum=1)
        tc = self.train_classes
        if isinstance(tc, (str, bytes)) or not isinstance(tc, (tuple, list, np.ndarray)):
            raise ValidationTypeError(f"train_classes must be a tuple of digits 0-9; got {tc!r}.")
        for c in tc:
            if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)) or not 0 <= c <= 9:
                raise ValidationError(f"train_classes must contain digits 0-9 (ints); got {c!r}.")
        tc = tuple(int(c) for c in tc)
        if len(set(tc)) != len(tc):
            raise ValidationError(f"train_classes must not repeat a digit; got {tc}.")
        self.train_classes = tc
        smaller = min(len(tc), 10 - len(tc))
        if smaller < self.n_way:
            raise ValidationError(f"n_way={self.n_way} exceeds the digits in the smaller split "
                                  f"({len(tc)} training, {10 - len(tc)} test digits by train_classes); "
                                  f"lower n_way or rebalance train_classes.")

    @property
    def n_out(self) -> int:
        """Output size: ``n_way`` classes."""
        return self.n_way

    def _by_class(self):
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise BackendUnavailableError(DIGITS_HINT) from None
        d = load_digits()
        X = d.data / 16.0
        return {c: X[d.target == c] for c in range(10)}

    def sample(self, rng: np.random.Generator, n: int, train: bool = True) -> list[Task]:
        """Draw ``n`` tasks from the training or the test digits.

        Parameters
        ----------
        rng : numpy.random.Generator or int seed
            Source of randomness.
        n : int, >= 1
            Number of tasks.
        train : bool
            Draw from ``train_classes`` (else the other digits).

        Returns
        -------
        list of Task
            ``n`` tasks of 64-pixel inputs.

        Raises
        ------
        ValidationError, ValidationTypeError
            A malformed argument, named.
        BackendUnavailableError
            scikit-learn is not installed.
        """
        rng, n, train = _sample_args(rng, n, train, float(self.n_way) * (self.k_shot + self.k_query) * 64,
                                     "DigitsTasks")
        data = self._by_class()
        pool = [c for c in range(10) if (c in self.train_classes) == train]
        if len(pool) < self.n_way:
            raise ValidationError(f"{len(pool)} classes in this split; n_way={self.n_way} is too many.")
        out = []
        for _ in range(n):
            chars = rng.choice(pool, size=self.n_way, replace=False)
            out.append(_split_task([data[int(c)] for c in chars], [self.k_shot] * self.n_way,
                                   self.k_query, rng, 0.0))
        return out


def _load_image(path: str, size: int) -> np.ndarray:
    import matplotlib.image as mpimg
    img = np.asarray(mpimg.imread(path), dtype=float)
    if img.ndim == 3:
        img = img[..., :3].mean(axis=-1)                 # grayscale
    if img.max() > 1.0:
        img = img / 255.0
    rows = np.linspace(0, img.shape[0] - 1, size).round().astype(int)
    cols = np.linspace(0, img.shape[1] - 1, size).round().astype(int)
    return img[np.ix_(rows, cols)].ravel()


@dataclass
class ImageFolderTasks:
    """N-way k-shot tasks from ``root/<split>/<class>/*.png`` (the usual Omniglot / mini-ImageNet layout).

    Images are read with matplotlib, converted to grayscale and resized (nearest neighbour) to
    ``size x size``; training tasks use ``train_split``, test tasks ``test_split``. Every class
    needs at least one image.

    Parameters
    ----------
    root : str
        Dataset folder.
    n_way : int, >= 2
        Classes per task.
    k_shot, k_query : int, >= 1
        Support and query examples per class.
    size : int in [1, 1024]
        Side of the resized square images.
    train_split, test_split : str
        Sub-folders of ``root``.

    Raises
    ------
    ValidationError
        A malformed argument; at sampling, a missing folder, an empty class or too few classes.
    """

    root: str
    n_way: int = 5
    k_shot: int = 1
    k_query: int = 5
    size: int = 28
    train_split: str = "train"
    test_split: str = "test"
    _cache: dict = field(default_factory=dict, repr=False)

    loss = "ce"

    def __post_init__(self) -> None:
        if not isinstance(self.root, (str, os.PathLike)) or isinstance(self.root, bytes):
            raise ValidationTypeError(f"root must be a folder path (str); got {type(self.root).__name__}.")
        self.root = os.fspath(self.root)
        if not self.root:
            raise ValidationError("root must be a non-empty folder path.")
        self.n_way = check_int(self.n_way, "n_way", minimum=2)
        self.k_shot = check_int(self.k_shot, "k_shot", minimum=1)
        self.k_query = check_int(self.k_query, "k_query", minimum=1)
        self.size = check_int(self.size, "size", minimum=1, maximum=1024)
        for name in ("train_split", "test_split"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v or os.sep in v:
                raise ValidationError(f"{name} must be the name of a sub-folder of root (e.g. 'train'); "
                                      f"got {v!r}.")

    @property
    def n_in(self) -> int:
        """Input size: ``size**2`` pixels."""
        return self.size * self.size

    @property
    def n_out(self) -> int:
        """Output size: ``n_way`` classes."""
        return self.n_way

    def classes(self, split: str) -> dict:
        """Return the images of every class of ``split``.

        Parameters
        ----------
        split : str
            A sub-folder of ``root``.

        Returns
        -------
        dict
            ``{class name: (n_images, size*size) ndarray}`` (read once, then cached).

        Raises
        ------
        ValidationError
            A missing folder or an empty class.
        """
        if not isinstance(split, str) or not split:
            raise ValidationError(f"split must be a sub-folder name of root; got {split!r}.")
        if split not in self._cache:
            folder = os.path.join(self.root, split)
            if not os.path.isdir(folder):
                raise ValidationError(f"no folder {folder!r}: expected root/{split}/<class>/*.png.")
            data = {}
            for name in sorted(os.listdir(folder)):
                cdir = os.path.join(folder, name)
                if not os.path.isdir(cdir):
                    continue
                files = sorted(f for f in os.listdir(cdir) if f.lower().endswith(".png"))
                if not files:
                    raise ValidationError(f"class folder {cdir!r} has no .png images.")
                data[name] = np.stack([_load_image(os.path.join(cdir, f), self.size) for f in files])
            if len(data) < self.n_way:
                raise ValidationError(f"{folder!r} has {len(data)} classes; n_way={self.n_way} needs more.")
            self._cache[split] = data
        return self._cache[split]

    def sample(self, rng: np.random.Generator, n: int, train: bool = True) -> list[Task]:
        """Draw ``n`` tasks from ``train_split`` or ``test_split``.

        Parameters
        ----------
        rng : numpy.random.Generator or int seed
            Source of randomness.
        n : int, >= 1
            Number of tasks.
        train : bool
            Draw from ``train_split`` (else ``test_split``).

        Returns
        -------
        list of Task
            ``n`` tasks of ``size**2``-pixel inputs.

        Raises
        ------
        ValidationError
            A malformed argument, a missing folder, an empty class or too few classes.
        """
        rng, n, train = _sample_args(rng, n, train, float(self.n_way) * (self.k_shot + self.k_query)
                                     * self.size ** 2, "ImageFolderTasks")
        data = self.classes(self.train_split if train else self.test_split)
        names = sorted(data)
        out = []
        for _ in range(n):
            chosen = rng.choice(len(names), size=self.n_way, replace=False)
            out.append(_split_task([data[names[int(i)]] for i in chosen], [self.k_shot] * self.n_way,
                                   self.k_query, rng, 0.0))
        return out
