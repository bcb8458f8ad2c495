"""Omniglot at CPU scale: data loading, the 20 one-shot runs, and a ProtoNet embedding
trained with uniform task weights (issue 17, first items).

Run:  python benchmarks/bench_omniglot.py [--data PATH] [--quick] [--iterations 300]

PATH defaults to ``../shared/data/omniglot`` relative to the repository root (the reduced
background set of 8 alphabets and ``all_runs.zip``); pass your own Omniglot copy otherwise.

Printed:
1. the time to decode and resize every drawing (cold, then from the in-memory cache);
2. the 20 one-shot runs scored by nearest neighbour on raw 28 x 28 pixels and by the modified
   Hausdorff distance (published 38.8%: a check of the runs reader), beside the published table;
3. a ProtoNet on the existing NumPy MLP (784 -> h -> h -> e, tanh; ``--net conv``: the small
   ConvNet of metalqr.tow.convnet, 3 blocks of ``--channels`` maps) trained by
   ``run_experiment`` with uniform weights on within-alphabet 5-way 1-shot tasks from the 5
   training alphabets (Adam); accuracy on 600 held-out-alphabet tasks (5-way and 20-way
   cross-alphabet 1-shot) and error on the 20 runs, against the same network untrained
   and raw pixels, with training wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from metalqr import tow  # noqa: E402
from metalqr.tow import omniglot  # noqa: E402
from metalqr.tow.convnet import ConvNet  # noqa: E402


def ci(a):
    a = np.asarray(a, dtype=float)
    return 1.96 * a.std(ddof=1) / np.sqrt(a.size)


def pixel_accuracy(tasks):
    """Nearest-prototype accuracy on raw pixels (an identity embedding)."""
    acc = []
    for t in tasks:
        N = int(t.y.max()) + 1
        protos = np.stack([t.s[t.y == k].mean(0) for k in range(N)])
        d = ((t.sq[:, None, :] - protos[None]) ** 2).sum(-1)
        acc.append(np.mean(np.argmin(d, 1) == t.yq))
    return np.array(acc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "omniglot"))
    ap.add_argument("--quick", action="store_true", help="short training (smoke run)")
    ap.add_argument("--iterations", type=int, default=300, help="training windows of T=5 mini-batches")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--embedding", type=int, default=64)
    ap.add_argument("--n-way", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-hausdorff", action="store_true")
    ap.add_argument("--net", choices=("mlp", "conv"), default="mlp",
                    help="ProtoNet embedding: the NumPy MLP or the small ConvNet (3 conv blocks)")
    ap.add_argument("--channels", type=int, default=8, help="ConvNet feature maps")
    args = ap.parse_args()
    iters = 20 if args.quick else args.iterations

    # 1. loading
    t0 = time.perf_counter()
    data = omniglot.load_omniglot(args.data)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    omniglot.load_omniglot(args.data)
    warm = time.perf_counter() - t0
    n_img = sum(v.shape[0] for c in data.values() for v in c.values())
    print(f"decoded {n_img} drawings of {sum(len(c) for c in data.values())} characters in {len(data)} alphabets: "
          f"{cold:.2f} s cold, {warm * 1e3:.1f} ms cached")

    # 2. one-shot runs: baselines
    runs = omniglot.load_one_shot_runs(args.data)
    raw = omniglot.evaluate_one_shot_runs(runs)
    others = []
    if not args.no_hausdorff:
        t0 = time.perf_counter()
        others.append(omniglot.evaluate_one_shot_runs(runs, distance="modified_hausdorff"))
        print(f"modified Hausdorff on {len(runs)} runs: {time.perf_counter() - t0:.1f} s")

    # 3. ProtoNet, uniform weights
    source = omniglot.OmniglotTasks(args.data, n_way=args.n_way, k_shot=1, k_query=5)
    train_a, test_a = source.split()
    print(f"training alphabets {train_a}; held-out {test_a}")
    if args.net == "mlp":
        learner = tow.make_learner("protonet", source, hidden=args.hidden, embedding=args.embedding)
    else:
        learner = tow.ProtoNet(ConvNet(source.n_in, args.channels, 3, args.embedding))
    print(f"ProtoNet on {learner.net} ({learner.net.size} parameters)")
    x0 = learner.init(args.seed)
    with tempfile.TemporaryDirectory() as ck:
        t0 = time.perf_counter()
        res = tow.run_experiment(source, learner, ("uniform",), n_iterations=iters, T=5, M=5, optimizer="adam",
                                 alpha=args.alpha, n_test=600, n_val=100, rng=args.seed, eval_every=max(1, iters // 10),
                                 checkpoint=ck, checkpoint_every=iters)
        wall = time.perf_counter() - t0
        x = res[0].params
    print(f"uniform ProtoNet training: {iters} windows x 5 mini-batches x 5 tasks in {wall:.1f} s "
          f"(incl. evaluation); validation curve {[(k, round(v, 3)) for k, v, _ in res[0].curve]}")

    rng = np.random.default_rng([args.seed, 10**6])           # the test tasks run_experiment used
    test5 = source.sample(rng, 600, train=False)
    cross20 = omniglot.OmniglotTasks(args.data, n_way=20, k_shot=1, k_query=1, cross_alphabet=True)
    test20 = cross20.sample(np.random.default_rng([args.seed, 7]), 300, train=False)
    rows = []
    for name, fn in [("raw pixels", None), ("untrained ProtoNet", x0), ("uniform-trained ProtoNet", x)]:
        a5 = pixel_accuracy(test5) if fn is None else learner.evaluate(fn, test5)
        a20 = pixel_accuracy(test20) if fn is None else learner.evaluate(fn, test20)
        one = raw if fn is None else omniglot.evaluate_one_shot_runs(
            runs, lambda X, p=fn: learner.net.predict(p, X), label=f"nearest neighbour, {name} embedding")
        if fn is not None:
            others.append(one)
        rows.append((name, a5.mean(), ci(a5), a20.mean(), ci(a20), one.error, one.ci95))
    print(f"\nheld-out alphabets {test_a}:")
    print(f"{'embedding':>26}  {args.n_way}-way 1-shot within alphabet  20-way 1-shot cross-alphabet  20 runs error")
    for name, m5, c5, m20, c20, e, ce in rows:
        print(f"{name:>26}  {m5:.3f} +- {c5:.3f}{'':>17}  {m20:.3f} +- {c20:.3f}{'':>13}  {100 * e:.1f}% +- {100 * ce:.1f}")
    print("\n20 one-shot runs (20-way 1-shot error, %):")
    print(raw.table(others))


if __name__ == "__main__":
    main()
