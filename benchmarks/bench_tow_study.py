"""TOW paper studies on Omniglot at CPU scale (issue 17): Table 1 over seeds, the weight probes
of Appendix C (Figure 4), 2 vs 10 iLQR iterations (Appendix D, Figure 6), the full value model
(Appendix B) and Theorem 5's delta. Built on :mod:`metalqr.tow.studies`.

Run (from the repository root):

    python benchmarks/bench_tow_study.py table1 --out results/table1 [--learners protonet maml]
        [--seeds 0 1 2] [--iterations 40] [--n-test 300] ...
    python benchmarks/bench_tow_study.py probes --out results/probes ...
    python benchmarks/bench_tow_study.py ilqr --out results/ilqr ...
    python benchmarks/bench_tow_study.py value-model --out results/value_model ...

``--data`` defaults to ``../shared/data/omniglot`` (the reduced background set: 8 alphabets);
pass your own Omniglot copy otherwise. Every command is resumable through ``--out``'s folder
(checkpoints) and writes self-describing CSV / JSON / markdown / PNG files beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from metalqr.tow import MLP, ProtoNet, make_learner, studies
from metalqr.tow.omniglot import OmniglotTasks


def build_source(args):
    return OmniglotTasks(args.data, n_way=args.n_way, k_shot=args.k_shot, k_query=args.k_query,
                         test_alphabets=args.test_alphabets)


def build_learner(kind, source, args):
    if kind == "protonet":
        return ProtoNet(MLP(source.n_in, args.hidden, args.embedding, "mse"), curvature_method=args.curvature,
                        mc_samples=1)
    if kind in ("maml", "fomaml"):
        return make_learner(kind, source, hidden=args.hidden, gamma=args.gamma, inner_steps=args.inner_steps)
    raise SystemExit(f"unknown learner {kind!r}")


def experiment_kwargs(args):
    return dict(n_iterations=args.iterations, T=args.T, M=args.M, optimizer="adam", alpha=args.alpha,
                beta_u=args.beta_u, kappa=args.kappa, n_ilqr=args.n_ilqr, n_test=args.n_test, n_val=args.n_val,
                eval_every=args.eval_every, checkpoint_every=args.checkpoint_every)


def cmd_table1(args):
    source = build_source(args)
    learners = {k: build_learner(k, source, args) for k in args.learners}
    t0 = time.perf_counter()
    extra = {} if not args.strategies else {"strategies": tuple(args.strategies)}
    study = studies.run_table1_study(source, learners, args.seeds, folder=args.ckpt or args.out + "_ckpt", **extra,
                                     compute=not args.report_only, progress=True, **experiment_kwargs(args))
    study.settings["command"] = " ".join([os.path.basename(sys.executable), *sys.argv])
    paths = study.save(args.out)
    print(study.markdown())
    print(f"wrote {json.dumps(paths)} in {time.perf_counter() - t0:.0f} s")


def cmd_probes(args):
    source = build_source(args)
    learner = build_learner(args.learner, source, args)
    st = studies.weight_probe_study(source, learner, n_iterations=args.iterations, probe_every=args.probe_every,
                                    T=args.T, M=args.M, alpha=args.alpha, beta_u=args.beta_u, n_ilqr=args.n_ilqr,
                                    n_val=args.n_val, rng=args.seeds[0], progress=True)
    st.settings["command"] = " ".join([os.path.basename(sys.executable), *sys.argv])
    paths = st.save(args.out)
    for probe, W in st.weights.items():
        d = studies.estimate_delta(W, exclude_last=args.T > 1)
        print(f"{probe}: delta {d.delta:.4f}, median {d.quantiles[50]:.4f}")
    print(studies._csv(st.summary()))
    print("wrote", json.dumps(paths))


def _curve_cmd(args, fn, **kw):
    source = build_source(args)
    if args.size != 28:
        from metalqr.tow.omniglot import OmniglotTasks as _O
        source = _O(args.data, n_way=args.n_way, k_shot=args.k_shot, k_query=args.k_query,
                    test_alphabets=args.test_alphabets, size=args.size)
    learner = build_learner(args.learner, source, args)
    ex = experiment_kwargs(args)
    ex.pop("n_ilqr") if fn is studies.ilqr_iterations_study else None
    ex["rng"] = args.seeds[0]
    st = fn(source, learner, reference=tuple(args.reference), folder=args.out + "_ckpt", progress=True, **kw, **ex)
    st.settings["command"] = " ".join([os.path.basename(sys.executable), *sys.argv])
    st.settings["n_parameters"] = learner.net.size
    paths = st.save(args.out)
    print(studies._csv(st.rows()))
    print("wrote", json.dumps(paths))


def cmd_ilqr(args):
    _curve_cmd(args, studies.ilqr_iterations_study, n_ilqr=tuple(args.compare))


def cmd_value_model(args):
    _curve_cmd(args, studies.value_model_study)


def cmd_window_cost(args):
    """Why TOW stays near uniform: the window cost J (Eq. (7)) of the uniform nominal and of
    Algorithm 1's weights, at the initial parameters and after uniform training."""
    import numpy as np

    from metalqr.tow import make_optimizer, run_experiment, tow_weights
    source = build_source(args)
    learner = build_learner(args.learner, source, args)
    seed = args.seeds[0]
    points = [("init", learner.init(seed))]
    if args.iterations:
        r = run_experiment(source, learner, ("uniform",), n_iterations=args.iterations, T=args.T, M=args.M,
                           optimizer="adam", alpha=args.alpha, n_test=2, n_val=2, rng=seed)[0]
        points.append((f"after {args.iterations} uniform windows", r.params))
    opt = make_optimizer("adam", args.alpha)
    rows = []
    for label, x in points:
        for k in range(args.windows):
            rng = np.random.default_rng([seed, 10_000 + k])
            batches = [source.sample(rng, args.M) for _ in range(args.T)]
            for beta_u, n_ilqr in ((10.0, 2), (10.0, 10), (0.1, 2)):
                res = tow_weights(learner, opt.initial_state(x), batches, optimizer=opt, tau0=0, beta_u=beta_u,
                                  n_ilqr=n_ilqr)
                J0, J = res.ilqr.costs[0], res.ilqr.cost
                prior = 0.5 * beta_u * np.sum((res.U - 1.0 / args.M) ** 2)
                d = studies.estimate_delta(res.U[None], exclude_last=True).delta
                rows.append(dict(point=label, window=k, beta_u=beta_u, n_ilqr=n_ilqr, J_uniform=J0, J_tow=J,
                                 relative_reduction=(J0 - J) / J0, loss_reduction=J0 - (J - prior), prior=prior,
                                 delta=d))
                print(rows[-1], flush=True)
    doc = dict(settings=dict(vars(args), fn=None, command=" ".join(sys.argv), tau0=0,
                             note="Adam state restarted at each point (m = v = 0, tau0 = 0)"),
               units=dict(J="Eq. (7) window cost: sum of the T mini-batches' summed query losses (nats) + prior",
                          loss_reduction="J_uniform - (J_tow - prior): decrease of the loss part (nats)",
                          delta="||u_t - 1/M|| max over the first T-1 mini-batches"), rows=rows)
    from metalqr import _checkpoint
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    _checkpoint.atomic_write_text(args.out + ".json", json.dumps(doc, default=str))
    _checkpoint.atomic_write_text(args.out + ".csv", studies._csv(rows))


def add_common(p):
    p.add_argument("--data", default=os.path.join(ROOT, "..", "..", "shared", "data", "omniglot")
                   if not os.path.isdir(os.path.join(ROOT, "..", "shared")) else
                   os.path.join(ROOT, "..", "shared", "data", "omniglot"))
    p.add_argument("--out", required=True, help="output file prefix (its _ckpt folder holds checkpoints)")
    p.add_argument("--ckpt", default=None, help="checkpoint folder (default: <out>_ckpt); several processes "
                   "(e.g. one per learner) may share it")
    p.add_argument("--n-way", type=int, default=5)
    p.add_argument("--k-shot", type=int, default=1)
    p.add_argument("--k-query", type=int, default=5)
    p.add_argument("--test-alphabets", type=int, default=3)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--embedding", type=int, default=32)
    p.add_argument("--curvature", default="mc", choices=("mc", "exact"))
    p.add_argument("--gamma", type=float, default=0.1)
    p.add_argument("--inner-steps", type=int, default=1)
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--T", type=int, default=5)
    p.add_argument("--M", type=int, default=5)
    p.add_argument("--alpha", type=float, default=1e-3)
    p.add_argument("--beta-u", type=float, default=10.0)
    p.add_argument("--kappa", type=float, default=1.2)
    p.add_argument("--n-ilqr", type=int, default=2)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--n-val", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--checkpoint-every", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("table1", help="Table 1 over seeds")
    add_common(p)
    p.add_argument("--learners", nargs="+", default=["protonet", "fomaml"])
    p.add_argument("--report-only", action="store_true", help="only load finished cells and report")
    p.add_argument("--strategies", nargs="+", default=None, help="default: uniform exploration exploitation tow")
    p.set_defaults(fn=cmd_table1)
    p = sub.add_parser("probes", help="Appendix C weight probes (Figure 4)")
    add_common(p)
    p.add_argument("--learner", default="protonet")
    p.add_argument("--probe-every", type=int, default=10)
    p.set_defaults(fn=cmd_probes)
    p = sub.add_parser("ilqr", help="Appendix D: iLQR iterations (Figure 6)")
    add_common(p)
    p.add_argument("--learner", default="protonet")
    p.add_argument("--compare", type=int, nargs="+", default=[2, 10])
    p.add_argument("--reference", nargs="*", default=["uniform"])
    p.add_argument("--size", type=int, default=28)
    p.set_defaults(fn=cmd_ilqr)
    p = sub.add_parser("value-model", help="Appendix B: full vs diagonal value matrix on a small network")
    add_common(p)
    p.add_argument("--learner", default="protonet")
    p.add_argument("--reference", nargs="*", default=["uniform"])
    p.add_argument("--size", type=int, default=7)
    p.set_defaults(fn=cmd_value_model)
    p = sub.add_parser("window-cost", help="window cost of uniform vs TOW weights (why TOW stays near uniform)")
    add_common(p)
    p.add_argument("--learner", default="protonet")
    p.add_argument("--windows", type=int, default=3)
    p.set_defaults(fn=cmd_window_cost)
    args = ap.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
