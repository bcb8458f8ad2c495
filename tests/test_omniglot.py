"""Omniglot task source and the one-shot runs (metalqr.tow.omniglot): tiny generated trees
(folders and zips), hand-computed resizing, the shared reduced set when present, and a table
of malformed inputs."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import metalqr
from helpers import assert_named_error
from metalqr.tow import make_learner, run_experiment
from metalqr.tow import omniglot as om

SIDE = 8          # side of the generated drawings (the real ones are 105)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared", "data", "omniglot")
if not os.path.isdir(SHARED):                      # a git worktree one level deeper than main
    SHARED = os.path.join(REPO, "..", "..", "shared", "data", "omniglot")
needs_shared = pytest.mark.skipif(
    not os.path.exists(os.path.join(SHARED, "images_background_small1.zip")),
    reason="shared Omniglot data (../shared/data/omniglot relative to the repository root) is absent")


def drawing(seed: int, side: int = SIDE) -> np.ndarray:
    """A reproducible binary drawing (True = ink) with at least one ink pixel."""
    ink = np.random.default_rng(seed).random((side, side)) < 0.3
    ink[seed % side, (seed // side) % side] = True
    return ink


def write_png(path, ink: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(~ink).convert("1").save(path)        # black ink on white, as Omniglot


TREE = {"Alpha": 4, "Beta": 3, "Gamma": 5}               # alphabet -> characters
N_DRAW = 4


def ink_of(a: str, c: int, d: int) -> np.ndarray:
    return drawing(1000 * (ord(a[0]) - 64) + 10 * c + d)


def make_tree(root, alphabets=TREE, wrapper="images_background"):
    for a, n_chars in alphabets.items():
        for c in range(1, n_chars + 1):
            for d in range(1, N_DRAW + 1):
                write_png(os.path.join(root, wrapper, a, f"character{c:02d}", f"{c:02d}_{d:02d}.png"), ink_of(a, c, d))
    return str(root)


def zip_folder(folder, zpath, top):
    with zipfile.ZipFile(zpath, "w") as zf:
        for dirpath, _, files in os.walk(folder):
            for f in files:
                full = os.path.join(dirpath, f)
                zf.write(full, os.path.join(top, os.path.relpath(full, folder)))
    return str(zpath)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("omni"))


def block_mean(ink: np.ndarray, size: int) -> np.ndarray:
    f = ink.shape[0] // size
    return ink.reshape(size, f, size, f).mean(axis=(1, 3))


# ----------------------------------------------------------------------------- resizing

def test_area_resize_hand_computation_3_to_2():
    X = np.array([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0], [64.0, 128.0, 256.0]])
    w = np.array([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]]) / 1.5       # overlaps of [0, 1.5) and [1.5, 3)
    expect = np.array([[sum(w[i, r] * w[j, c] * X[r, c] for r in range(3) for c in range(3)) for j in range(2)]
                       for i in range(2)])
    assert np.allclose(om.area_resize(X, 2), expect, rtol=1e-14)
    assert np.isclose(om.area_resize(X, 2)[0, 0], (1 + 0.5 * 2 + 0.5 * 8 + 0.25 * 16) / 2.25)


def test_area_resize_105_to_28_hand_and_pil_box():
    X = np.random.default_rng(0).random((105, 105))
    out = om.area_resize(X, 28)
    # output pixel (0, 0) covers rows/cols [0, 3.75): pixels 0, 1, 2 fully and 3 by 0.75
    w = np.array([1, 1, 1, 0.75]) / 3.75
    assert np.isclose(out[0, 0], w @ X[:4, :4] @ w, rtol=1e-13)
    # pixel (1, 2) covers rows [3.75, 7.5) and cols [7.5, 11.25)
    wr = np.array([0.25, 1, 1, 1, 0.5]) / 3.75                        # rows 3..7
    wc = np.array([0.5, 1, 1, 1, 0.25]) / 3.75                        # cols 7..11
    assert np.isclose(out[1, 2], wr @ X[3:8, 7:12] @ wc, rtol=1e-13)
    # second derivation: each pixel -> 4 x 4 copies (420 x 420), then exact 15 x 15 block means
    fine = np.kron(X, np.ones((4, 4)))
    assert np.allclose(out, fine.reshape(28, 15, 28, 15).mean(axis=(1, 3)), rtol=1e-12)
    # integer ratio: Pillow's BOX filter is the same block mean (for fractional ratios it weights
    # whole pixels by their centres, not by overlap, so it differs there)
    Y = X[:104, :104].astype(np.float32)
    box = np.asarray(Image.fromarray(Y, mode="F").resize((26, 26), Image.BOX))
    assert np.max(np.abs(box - om.area_resize(Y, 26))) < 1e-5


@given(st.integers(2, 12), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_area_resize_preserves_mean_and_range(h, size, seed):
    size = min(size, h)
    X = np.random.default_rng(seed).random((2, h, h))
    Y = om.area_resize(X, size)
    assert Y.shape == (2, size, size)
    assert np.allclose(Y.mean(axis=(1, 2)), X.mean(axis=(1, 2)), rtol=1e-12)
    assert Y.min() >= X.min() - 1e-12 and Y.max() <= X.max() + 1e-12


# ----------------------------------------------------------------------------- loading

def test_folder_tree_hierarchy_and_pixels(tree):
    data = om.load_omniglot(tree, size=4)
    assert sorted(data) == sorted(TREE)
    for a, n in TREE.items():
        assert sorted(data[a]) == [f"character{c:02d}" for c in range(1, n + 1)]
        assert data[a]["character01"].shape == (N_DRAW, 4, 4)
    got = data["Beta"]["character02"][2]                       # drawing 3 of character 2
    assert np.allclose(got, block_mean(ink_of("Beta", 2, 3).astype(float), 4), atol=1e-6)
    full = om.load_omniglot(tree, size=SIDE)
    assert np.array_equal(full["Gamma"]["character05"][0], ink_of("Gamma", 5, 1).astype(np.float32))


def test_zips_merged_in_place_with_duplicates_dropped(tmp_path, tree):
    a = make_tree(tmp_path / "a", {"Alpha": 4, "Beta": 3}, wrapper="")
    b = make_tree(tmp_path / "b", {"Beta": 3, "Gamma": 5}, wrapper="")    # Beta in both, same drawings
    za = zip_folder(a, tmp_path / "images_background_small1.zip", "images_background_small1")
    zb = zip_folder(b, tmp_path / "images_background_small2.zip", "images_background_small2")
    merged = om.load_omniglot([za, zb], size=4)
    ref = om.load_omniglot(tree, size=4)
    assert sorted(merged) == sorted(ref)
    for al in ref:
        for c in ref[al]:
            assert merged[al][c].shape == ref[al][c].shape        # no doubled drawings
            assert np.array_equal(merged[al][c], ref[al][c])
    # a folder that holds the zips (as ../shared/data/omniglot) reads the same
    holder = tmp_path / "holder"
    holder.mkdir()
    for z in (za, zb):
        os.link(z, holder / os.path.basename(z))
    again = om.load_omniglot(str(holder), size=4)
    assert all(np.array_equal(again[al][c], ref[al][c]) for al in ref for c in ref[al])


def test_conflicting_duplicate_is_refused(tmp_path):
    a = make_tree(tmp_path / "a", {"Beta": 2}, wrapper="")
    b = make_tree(tmp_path / "b", {"Beta": 2}, wrapper="")
    write_png(os.path.join(b, "Beta", "character01", "01_01.png"), drawing(999))
    with pytest.raises(metalqr.ValidationError, match="different contents"):
        om.load_omniglot([a, b], size=4)


def test_runs_files_are_not_read_as_alphabets(tmp_path):
    root = make_tree(tmp_path / "t", {"Alpha": 2}, wrapper="")
    make_runs(tmp_path / "t")
    assert sorted(om.load_omniglot(root, size=4)) == ["Alpha"]


def test_missing_path_says_where_the_full_set_is(tmp_path):
    err = assert_named_error(om.OmniglotTasks, "path", str(tmp_path / "nowhere"))
    assert "github.com/brendenlake/omniglot" in str(err)
    err = assert_named_error(om.load_omniglot, "path", str(tmp_path))        # empty folder
    assert "github.com/brendenlake/omniglot" in str(err)


# ----------------------------------------------------------------------------- the task source

def image_index(data, size):
    """Map each image's bytes to (alphabet, character, drawing, rotation)."""
    idx = {}
    for a, chars in data.items():
        for c, X in chars.items():
            for d, img in enumerate(X):
                for k in range(4):
                    idx.setdefault(np.rot90(img, k).astype(np.float64).tobytes(), (a, c, d, 90 * k))
    return idx


def test_split_is_by_alphabet_and_deterministic(tree):
    src = om.OmniglotTasks(tree, n_way=2, size=4, k_query=2, test_alphabets=1)
    train, test = src.split()
    assert sorted(train + test) == sorted(TREE) and not set(train) & set(test) and len(test) == 1
    assert om.OmniglotTasks(tree, n_way=2, size=4, k_query=2, test_alphabets=1).split() == (train, test)
    splits = {tuple(om.OmniglotTasks(tree, n_way=2, size=4, test_alphabets=1, split_seed=s).split()[1])
              for s in range(12)}
    assert len(splits) > 1                                      # the seed matters
    named = om.OmniglotTasks(tree, n_way=2, size=4, test_alphabets=["Gamma", "Alpha"])
    assert named.split() == (["Beta"], ["Alpha", "Gamma"])


def test_within_alphabet_tasks(tree):
    src = om.OmniglotTasks(tree, n_way=3, k_shot=1, k_query=2, size=4, test_alphabets=["Beta"])
    assert (src.n_in, src.n_out, src.loss) == (16, 3, "ce")
    idx = image_index(src.data(), 4)
    names = src.alphabet_names()
    for train in (True, False):
        tasks = src.sample(np.random.default_rng(1), 30, train=train)
        for t in tasks:
            assert t.s.shape == (3, 16) and t.sq.shape == (6, 16)
            assert sorted(t.y) == [0, 1, 2] and list(np.bincount(t.yq)) == [2, 2, 2]
            keys = [idx[v.reshape(4, 4).tobytes()] for v in np.concatenate([t.s, t.sq])]
            alph = {k[0] for k in keys}
            assert alph == {names[int(t.group)]}                     # one alphabet, named by group
            assert (alph == {"Beta"}) == (not train)                 # split by alphabet
            labels = np.concatenate([t.y, t.yq])
            for lab in range(3):                                    # one character per label, no repeats
                ks = [keys[i] for i in np.flatnonzero(labels == lab)]
                assert len({k[:2] for k in ks}) == 1 and len({k[2] for k in ks}) == len(ks)
            assert len({keys[i][:2] for i in range(3)}) == 3
    a = src.sample(np.random.default_rng(5), 4)
    b = src.sample(np.random.default_rng(5), 4)
    assert all(np.array_equal(x.s, y.s) and np.array_equal(x.yq, y.yq) for x, y in zip(a, b))


def test_n_way_too_large_names_alphabet_and_fix(tree):
    src = om.OmniglotTasks(tree, n_way=4, size=4, k_query=2, test_alphabets=["Gamma"])
    err = assert_named_error(src.sample, "n_way", np.random.default_rng(0), 1)
    assert "'Beta'" in str(err) and "cross_alphabet" in str(err)
    cross = om.OmniglotTasks(tree, n_way=6, size=4, k_query=2, test_alphabets=["Gamma"], cross_alphabet=True)
    idx = image_index(cross.data(), 4)
    seen = set()
    for t in cross.sample(np.random.default_rng(0), 20):
        assert t.group == -1.0 and sorted(t.y) == list(range(6))
        seen |= {idx[v.reshape(4, 4).tobytes()][0] for v in t.s}
    assert seen == {"Alpha", "Beta"}
    rot = om.OmniglotTasks(tree, n_way=4, size=4, k_query=2, test_alphabets=["Gamma"], rotations=(0, 180))
    assert len(rot.sample(np.random.default_rng(0), 3)) == 3            # 3 x 2 classes in Beta


def test_rotations_are_new_classes(tree):
    src = om.OmniglotTasks(tree, n_way=8, k_shot=1, k_query=3, size=4, test_alphabets=["Alpha", "Beta"],
                           rotations=(0, 90, 180, 270))
    idx = image_index(src.data(), 4)
    angles = set()
    for t in src.sample(np.random.default_rng(2), 20):
        keys = [idx[v.reshape(4, 4).tobytes()] for v in np.concatenate([t.s, t.sq])]
        labels = np.concatenate([t.y, t.yq])
        per_label = [{(k[1], k[3]) for k, lab in zip(keys, labels) if lab == j} for j in range(8)]
        assert all(len(p) == 1 for p in per_label)                  # a label is one (character, angle)
        assert len(set().union(*per_label)) == 8
        angles |= {k[3] for k in keys}
    assert angles == {0, 90, 180, 270}


def test_too_many_drawings_requested(tree):
    src = om.OmniglotTasks(tree, n_way=2, k_shot=2, k_query=3, size=4, test_alphabets=1)
    err = assert_named_error(src.sample, "k_query", np.random.default_rng(0), 1)
    assert "4 drawings" in str(err)


@pytest.mark.parametrize("kind", ["protonet", "fomaml"])
def test_plugs_into_run_experiment(tree, kind):
    src = om.OmniglotTasks(tree, n_way=2, k_shot=1, k_query=2, size=4, test_alphabets=1)
    learner = make_learner(kind, src, hidden=8, embedding=4)
    res = run_experiment(src, learner, ("uniform", "tow"), n_iterations=2, T=2, M=2, n_test=5, n_val=3,
                         optimizer="adam", alpha=1e-2)
    assert [r.name for r in res] == ["uniform", "tow"]
    for r in res:
        assert r.metric.shape == (5,) and np.all((r.metric >= 0) & (r.metric <= 1))
        assert set(np.unique(r.groups)) <= set(range(len(TREE)))


# ----------------------------------------------------------------------------- one-shot runs

def make_runs(root, n_runs=2, n_classes=4, zip_name=None):
    """Runs whose test items are the training drawings shifted by one pixel (so raw-pixel nearest
    neighbour may err) with a known shuffled labelling."""
    truth = {}
    for r in range(1, n_runs + 1):
        run = f"run{r:02d}"
        perm = np.random.default_rng(r).permutation(n_classes)
        lines = []
        for c in range(n_classes):
            write_png(os.path.join(root, run, "training", f"class{c + 1:02d}.png"), drawing(500 * r + c))
        for i in range(n_classes):
            write_png(os.path.join(root, run, "test", f"item{i + 1:02d}.png"), drawing(500 * r + perm[i]))
            lines.append(f"{run}/test/item{i + 1:02d}.png {run}/training/class{perm[i] + 1:02d}.png")
        with open(os.path.join(root, run, "class_labels.txt"), "w") as fh:
            fh.write("\n".join(lines) + "\n")
        truth[run] = perm
    return truth


def test_runs_reader_folder_and_zip(tmp_path):
    truth = make_runs(tmp_path / "all_runs")
    z = zip_folder(tmp_path / "all_runs", tmp_path / "all_runs.zip", "")
    for p in (str(tmp_path / "all_runs"), z):
        runs = om.load_one_shot_runs(p)
        assert [r.name for r in runs] == ["run01", "run02"]
        for r in runs:
            assert np.array_equal(r.labels, truth[r.name])          # 1-based classYY -> YY - 1
            assert r.train_files[0] == "class01.png" and r.test.shape == (4, SIDE, SIDE)
            for i, lab in enumerate(r.labels):
                assert np.array_equal(r.test[i], r.train[lab])
        res = om.evaluate_one_shot_runs(runs, size=SIDE)
        assert res.error == 0.0 and np.array_equal(res.predictions, np.stack([truth["run01"], truth["run02"]]))
        assert om.evaluate_one_shot_runs(p, distance="modified_hausdorff").error == 0.0
    holder = tmp_path / "holder"
    holder.mkdir()
    os.link(z, holder / "all_runs.zip")
    assert len(om.load_one_shot_runs(str(holder))) == 2


def test_embedding_errors_are_counted(tmp_path):
    truth = make_runs(tmp_path)
    runs = om.load_one_shot_runs(str(tmp_path))
    const = om.evaluate_one_shot_runs(runs, lambda X: np.zeros((len(X), 3)), size=4)
    assert np.allclose(const.per_run, [np.mean(truth[r] != 0) for r in ("run01", "run02")])   # argmin ties -> 0
    tasks = om.one_shot_run_tasks(runs, size=4)
    assert [t.s.shape for t in tasks] == [(4, 16)] * 2 and np.array_equal(tasks[1].yq, truth["run02"])
    assert "38.8" in const.table() and "constant" not in const.table()


def test_embedding_of_protonet_matches_its_one_shot_accuracy(tmp_path):
    make_runs(tmp_path, n_classes=5)
    runs = om.load_one_shot_runs(str(tmp_path))
    tasks = om.one_shot_run_tasks(runs, size=4)
    src = type("S", (), {"n_in": 16, "n_out": 5, "loss": "ce"})()
    learner = make_learner("protonet", src, hidden=6, embedding=3)
    x = learner.init(4)
    res = om.evaluate_one_shot_runs(runs, om.embedding_of(learner, x), size=4)
    assert np.allclose(1.0 - res.per_run, learner.evaluate(x, tasks))       # nearest neighbour = prototype
    assert_named_error(om.embedding_of, "learner", make_learner("fomaml", src, hidden=4), x)
    assert_named_error(om.embedding_of, "x", learner, x[:-1])
    assert_named_error(om.embedding_of, "x", learner, np.full_like(x, np.nan))
    assert_named_error(om.embedding_of(learner, x), "X", np.ones((2, 15)))


def test_malformed_labels_file(tmp_path):
    make_runs(tmp_path, n_runs=1)
    path = os.path.join(tmp_path, "run01", "class_labels.txt")
    with open(path) as fh:
        good = fh.read()
    for bad, word in [("run01/test/item01.png\n", "line 1"),
                      (good.replace("run01/training/class", "run02/training/class", 1), "run01/training"),
                      (good.replace("item01.png run01/training/class", "item01.png run01/training/klass", 1),
                       "does not exist"),
                      ("\n".join(good.splitlines()[1:]), "does not label")]:
        with open(path, "w") as fh:
            fh.write(bad)
        err = assert_named_error(om.load_one_shot_runs, "path", str(tmp_path))
        assert word in str(err)


def test_modified_hausdorff_against_brute_force():
    from scipy.spatial.distance import cdist
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((30, 2)), rng.standard_normal((17, 2)) + 0.5
    D = cdist(A, B)
    assert np.isclose(om.modified_hausdorff(A, B), max(D.min(1).mean(), D.min(0).mean()), rtol=1e-13)
    assert om.modified_hausdorff(A, A) == 0.0


# ----------------------------------------------------------------------------- shared data

@needs_shared
def test_shared_reduced_background_set():
    data = om.load_omniglot(SHARED)
    counts = {a: len(c) for a, c in data.items()}
    assert len(counts) == 8 and sum(counts.values()) == 242
    assert counts["Greek"] == 24 and counts["Latin"] == 26 and counts["Tagalog"] == 17
    assert all(X.shape == (20, 28, 28) for c in data.values() for X in c.values())
    src = om.OmniglotTasks(SHARED, n_way=20, k_shot=1, k_query=1, test_alphabets=["Tagalog"])
    err = assert_named_error(src.sample, "n_way", 0, 1, train=False)
    assert "'Tagalog'" in str(err)
    t = om.OmniglotTasks(SHARED, n_way=5).sample(np.random.default_rng(0), 2)[0]
    assert t.s.shape == (5, 784) and 0.0 <= t.s.min() and t.s.max() <= 1.0 + 1e-6


@needs_shared
def test_shared_runs_labels_and_hausdorff_reader():
    from scipy.spatial.distance import cdist
    runs = om.load_one_shot_runs(os.path.join(SHARED, "all_runs.zip"))
    assert len(runs) == 20
    assert all(sorted(r.labels) == list(range(20)) for r in runs)      # one test item per class
    r = runs[0]
    with zipfile.ZipFile(os.path.join(SHARED, "all_runs.zip")) as zf:
        lines = zf.read("run01/class_labels.txt").decode().split()
    assert int(lines[1][-6:-4]) - 1 == r.labels[0]
    # the Omniglot demo's LoadImgAsPoints + ModHausdorffDistance, by brute force, on run01
    pts = [np.argwhere(im > 0.5) - np.argwhere(im > 0.5).mean(0) for im in (*r.train, *r.test)]
    def mhd(P, Q):
        D = cdist(P, Q)
        return max(D.min(1).mean(), D.min(0).mean())

    C = np.array([[mhd(pts[20 + i], pts[j]) for j in range(20)] for i in range(4)])     # 4 items: fast
    res = om.evaluate_one_shot_runs(runs[:1], distance="modified_hausdorff")
    assert np.array_equal(res.predictions[0][:4], np.argmin(C, axis=1))


# ----------------------------------------------------------------------------- malformed inputs

def _src(tree, **kw):
    return om.OmniglotTasks(tree, **{"size": 4, "n_way": 2, "k_query": 2, "test_alphabets": 1, **kw})


MALFORMED = [
    # (name, callable factory taking the tree, word, exception)
    ("OmniglotTasks", lambda t: (lambda: _src(t, n_way=1)), "n_way", metalqr.ValidationError),
    ("OmniglotTasks", lambda t: (lambda: _src(t, n_way=2.0)), "n_way", metalqr.ValidationTypeError),
    ("OmniglotTasks", lambda t: (lambda: _src(t, k_shot=0)), "k_shot", metalqr.ValidationError),
    ("OmniglotTasks", lambda t: (lambda: _src(t, k_query=True)), "k_query", metalqr.ValidationTypeError),
    ("OmniglotTasks", lambda t: (lambda: _src(t, size=0)), "size", metalqr.ValidationError),
    ("OmniglotTasks", lambda t: (lambda: _src(t, rotations=(45,))), "rotations", metalqr.ValidationError),
    ("OmniglotTasks", lambda t: (lambda: _src(t, rotations=(0, 0))), "rotations", metalqr.ValidationError),
    ("OmniglotTasks", lambda t: (lambda: _src(t, rotations="90")), "rotations", metalqr.ValidationTypeError),
    ("OmniglotTasks", lambda t: (lambda: _src(t, test_alphabets=0)), "test_alphabets", metalqr.ValidationError),
    ("OmniglotTasks", lambda t: (lambda: _src(t, test_alphabets=True)), "test_alphabets",
     metalqr.ValidationTypeError),
    ("OmniglotTasks", lambda t: (lambda: _src(t, test_alphabets=3).split()), "test_alphabets",
     metalqr.ValidationError),
    ("OmniglotTasks", lambda t: (lambda: _src(t, test_alphabets=["Gama"]).split()), "test_alphabets",
     metalqr.ValidationError),
    ("OmniglotTasks", lambda t: (lambda: _src(t, split_seed=-1)), "split_seed", metalqr.ValidationError),
    ("OmniglotTasks", lambda t: (lambda: _src(t, cross_alphabet=1)), "cross_alphabet",
     metalqr.ValidationTypeError),
    ("OmniglotTasks", lambda t: (lambda: om.OmniglotTasks(3.5)), "path", metalqr.ValidationTypeError),
    ("OmniglotTasks", lambda t: (lambda: om.OmniglotTasks([])), "path", metalqr.ValidationTypeError),
    ("OmniglotTasks", lambda t: (lambda: om.OmniglotTasks(os.path.join(t, "images_background", "Alpha", "character01",
                                                                        "01_01.png"))), "path", metalqr.ValidationError),
    ("sample", lambda t: (lambda: _src(t).sample("seed", 2)), "rng", metalqr.ValidationTypeError),
    ("sample", lambda t: (lambda: _src(t).sample(0, -1)), "n", metalqr.ValidationError),
    ("sample", lambda t: (lambda: _src(t).sample(0, 2.5)), "n", metalqr.ValidationTypeError),
    ("sample", lambda t: (lambda: _src(t).sample(0, 2, train="yes")), "train", metalqr.ValidationTypeError),
    ("sample", lambda t: (lambda: _src(t).sample(0, 10**9)), "n", metalqr.ValidationError),
    ("area_resize", lambda t: (lambda: om.area_resize(np.ones((3, 4)), 2)), "images", metalqr.ValidationError),
    ("area_resize", lambda t: (lambda: om.area_resize(np.ones((4, 4)), 5)), "size", metalqr.ValidationError),
    ("area_resize", lambda t: (lambda: om.area_resize(np.full((4, 4), np.nan), 2)), "images",
     metalqr.ValidationError),
    ("area_resize", lambda t: (lambda: om.area_resize(np.ones((4, 4), bool), 2)), "images",
     metalqr.ValidationTypeError),
    ("area_resize", lambda t: (lambda: om.area_resize(np.ones((4, 4)), "2")), "size", metalqr.ValidationTypeError),
    ("load_omniglot", lambda t: (lambda: om.load_omniglot(t, size=0)), "size", metalqr.ValidationError),
    ("load_omniglot", lambda t: (lambda: om.load_omniglot(t, size=99)), "path", metalqr.ValidationError),
    ("load_omniglot", lambda t: (lambda: om.load_omniglot(None)), "path", metalqr.ValidationTypeError),
    ("load_omniglot", lambda t: (lambda: om.load_omniglot([t, 3])), "path", metalqr.ValidationTypeError),
    ("load_omniglot", lambda t: (lambda: om.load_omniglot(t + "_missing")), "path", metalqr.ValidationError),
    ("load_one_shot_runs", lambda t: (lambda: om.load_one_shot_runs(t)), "path", metalqr.ValidationError),
    ("load_one_shot_runs", lambda t: (lambda: om.load_one_shot_runs(t + "_missing")), "path",
     metalqr.ValidationError),
    ("load_one_shot_runs", lambda t: (lambda: om.load_one_shot_runs(None)), "path", metalqr.ValidationTypeError),
    ("load_one_shot_runs", lambda t: (lambda: om.load_one_shot_runs([t])), "path", metalqr.ValidationTypeError),
    ("evaluate_one_shot_runs", lambda t: (lambda: om.evaluate_one_shot_runs(t, distance="l1")), "distance",
     metalqr.ValidationError),
    ("evaluate_one_shot_runs", lambda t: (lambda: om.evaluate_one_shot_runs(t, embed=3)), "embed",
     metalqr.ValidationTypeError),
    ("evaluate_one_shot_runs", lambda t: (lambda: om.evaluate_one_shot_runs(
        t, embed=lambda X: X, distance="modified_hausdorff")), "embed", metalqr.ValidationError),
    ("evaluate_one_shot_runs", lambda t: (lambda: om.evaluate_one_shot_runs(t, label=3)), "label",
     metalqr.ValidationTypeError),
    ("evaluate_one_shot_runs", lambda t: (lambda: om.evaluate_one_shot_runs(3)), "runs",
     metalqr.ValidationTypeError),
    ("one_shot_run_tasks", lambda t: (lambda: om.one_shot_run_tasks([1, 2])), "runs", metalqr.ValidationTypeError),
    ("one_shot_run_tasks", lambda t: (lambda: om.one_shot_run_tasks([])), "runs", metalqr.ValidationTypeError),
    ("one_shot_run_tasks", lambda t: (lambda: om.one_shot_run_tasks(t + "_missing")), "path",
     metalqr.ValidationError),
    ("one_shot_run_tasks", lambda t: (lambda: om.one_shot_run_tasks(
        [om.OneShotRun("run01", np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), np.arange(2), (), ())], size=0)), "size",
     metalqr.ValidationError),
    ("modified_hausdorff", lambda t: (lambda: om.modified_hausdorff(np.ones((3, 2)), np.ones((3, 3)))), "B",
     metalqr.ValidationError),
    ("modified_hausdorff", lambda t: (lambda: om.modified_hausdorff(np.ones((0, 2)), np.ones((3, 2)))), "A",
     metalqr.ValidationError),
    ("modified_hausdorff", lambda t: (lambda: om.modified_hausdorff(np.ones(3), np.ones((3, 2)))), "A",
     metalqr.ValidationError),
    ("modified_hausdorff", lambda t: (lambda: om.modified_hausdorff(np.ones((3, 2)), [[1, np.inf]])), "B",
     metalqr.ValidationError),
]


@pytest.mark.parametrize("case", range(len(MALFORMED)), ids=[f"{m[0]}-{m[2]}-{i}" for i, m in enumerate(MALFORMED)])
def test_malformed_inputs(tree, case):
    _, factory, word, exc = MALFORMED[case]
    assert_named_error(factory(tree), word, exc=exc)


def test_malformed_eval_embed_shapes(tmp_path):
    make_runs(tmp_path, n_runs=1)
    runs = om.load_one_shot_runs(str(tmp_path))
    for embed in (lambda X: X[:2], lambda X: X.ravel(), lambda X: np.full(X.shape, np.nan),
                  lambda X: X + 1j):
        err = assert_named_error(om.evaluate_one_shot_runs, "embed(X)", runs, embed, size=4)
        assert "embed(X)" in str(err)


# ----------------------------------------------------------------------------- the small ConvNet

from metalqr.tow import MAML, ProtoNet  # noqa: E402
from metalqr.tow import convnet as cv  # noqa: E402
from metalqr.tow.mlp import softmax  # noqa: E402


def conv_reference(net, x, img):
    """Second derivation of the forward pass: scipy's correlate2d per channel pair, pooling by reshape."""
    from scipy.signal import correlate2d
    P = net.unpack(x)
    A = img.reshape(net.side, net.side)[None]
    c = net.channels
    for b in range(net.blocks):
        W, bias = P[2 * b].reshape(c, -1, 3, 3), P[2 * b + 1]
        Z = np.stack([sum(correlate2d(A[ci], W[co, ci], mode="same") for ci in range(A.shape[0])) + bias[co]
                      for co in range(c)])
        Rl = np.maximum(Z, 0)
        h = Rl.shape[1] // 2
        A = Rl[:, :2 * h, :2 * h].reshape(c, h, 2, h, 2).max(axis=(2, 4))
    return P[-2] @ A.transpose(1, 2, 0).ravel() + P[-1]


def fd_jacobian(net, x, s, eps=1e-6):
    J = np.zeros(net.predict(x, s).shape + (x.size,))
    for k in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp[k] += eps
        xm[k] -= eps
        J[..., k] = (net.predict(xp, s) - net.predict(xm, s)) / (2 * eps)
    return J


@pytest.fixture
def small_conv():
    net = cv.ConvNet(n_in=49, channels=3, blocks=2, n_out=4, loss="ce")     # 7 -> 3 -> 1 (odd sides crop)
    rng = np.random.default_rng(0)
    x = net.init(1) + 0.05 * rng.standard_normal(net.size)
    return net, x, rng.random((5, 49)), rng


def test_convnet_forward_matches_scipy(small_conv):
    net, x, s, _ = small_conv
    out = net.predict(x, s)
    assert out.shape == (5, 4)
    assert max(np.max(np.abs(conv_reference(net, x, s[i]) - out[i])) for i in range(5)) < 1e-12


def test_convnet_vjp_gn_and_loss_gradient_against_finite_differences(small_conv, monkeypatch):
    net, x, s, rng = small_conv
    J = fd_jacobian(net, x, s)                                         # (n, C, D)
    dout = rng.standard_normal((2, 3, 5, 4))                           # leading batch dims
    g = net.vjp(x, s, dout)
    assert g.shape == (2, 3, net.size)
    assert np.allclose(g, np.einsum("abnc,ncd->abd", dout, J), atol=1e-7)
    monkeypatch.setattr(cv, "_CHUNK", 10)                               # chunked back-propagation agrees
    assert np.allclose(net.vjp(x, s, dout), g, rtol=1e-12, atol=1e-14)
    y = np.array([0, 1, 2, 3, 1])
    p = softmax(net.predict(x, s))
    H = (np.einsum("nc,cd->ncd", p, np.eye(4)) - p[:, :, None] * p[:, None, :]) / 5
    assert np.allclose(net.gauss_newton_diagonal(x, s), np.einsum("nck,ncd,ndk->k", J, H, J), atol=1e-8)
    val, grad = net.loss_and_grad(x, s, y)
    fd = np.array([(net.loss_and_grad(x + e, s, y)[0] - net.loss_and_grad(x - e, s, y)[0]) / 2e-6
                   for e in np.eye(net.size) * 1e-6])
    assert np.allclose(grad, fd, atol=1e-7) and np.isclose(val, -np.mean(np.log(p[np.arange(5), y])))
    mse = cv.ConvNet(n_in=49, channels=3, blocks=2, n_out=4)
    assert np.allclose(mse.gauss_newton_diagonal(x, s), 2 / 5 * np.einsum("nck,nck->k", J, J), atol=1e-8)


def test_protonet_and_fomaml_on_convnet(small_conv):
    net, x, s, rng = small_conv
    emb = ProtoNet(cv.ConvNet(n_in=49, channels=3, blocks=2, n_out=4))
    task = metalqr.tow.Task(s[:3], np.array([0, 1, 2]), rng.random((4, 49)), np.array([0, 1, 2, 1]))
    loss, g = emb.task_loss_and_grad(x, task)
    fd = np.array([(emb.task_loss_and_grad(x + e, task)[0] - emb.task_loss_and_grad(x - e, task)[0]) / 2e-6
                   for e in np.eye(x.size) * 1e-6])
    assert np.allclose(g, fd, atol=1e-7)
    assert emb.curvature(x, [task]).shape == (x.size, 1)
    fo = MAML(net, 0.1, 1, first_order=True)
    task4 = metalqr.tow.Task(s[:4], np.arange(4), s[1:], np.array([1, 2, 3, 0]))
    assert fo.batch(x, [task4], curvature=True)[1].shape == (x.size, 1)
    assert_named_error(MAML(net, 0.1, 1, first_order=False).task_loss_and_grad, "fomaml", x, task4)


@pytest.mark.parametrize("kwargs,word", [
    (dict(n_in=35), "n_in"), (dict(n_in=784.0), "n_in"), (dict(channels=0), "channels"),
    (dict(blocks=5), "blocks"), (dict(blocks=0), "blocks"), (dict(n_out=0), "n_out"), (dict(loss="l1"), "loss"),
])
def test_malformed_convnet(kwargs, word):
    assert_named_error(cv.ConvNet, word, **kwargs)
