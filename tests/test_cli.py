"""The ``metalqr`` console script: one-line user errors with exit status 2, ``--debug``
tracebacks, ``--version``, help texts with defaults, option validation, the output-folder
lock and the non-zero exit of a stalled Figure 1 setting."""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys

import pytest

import metalqr
from metalqr import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


#: The tow sub-command's options are validated and documented on the tow branch; until that
#: branch is merged its cases are expected to fail (and its bad values must not be run).
_TOW_READY = bool(_subparsers(cli.build_parser())["tow"].description)


def _env():
    """Environment for a subprocess that must import the metalqr under test (the source
    tree, or the installed copy when CI runs the suite against it)."""
    env = dict(os.environ)
    env.pop("METALQR_DEBUG", None)
    pkg_parent = str(pathlib.Path(metalqr.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "metalqr", *args], capture_output=True,
                          text=True, cwd=cwd, env=_env(), timeout=300)


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("metalqr: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_compile(monkeypatch):
    """Tests that replace the Figure 1 run skip the kernel warm-up (and its notice)."""
    monkeypatch.setattr(cli, "_compile_kernels", lambda *args, **kwargs: None)


# --------------------------------------------------------------------------- user errors
USER_ERRORS = [   # (argv, a word the one-line message must contain)
    (["demo", "--iterations", "0"], "--iterations"),
    (["demo", "--iterations", "-3"], "--iterations"),
    (["demo", "--iterations", "1e3"], "--iterations"),
    (["demo", "--iterations", "ten"], "--iterations"),
    (["demo", "--iterations", "2.5"], "--iterations"),
    (["demo", "--frobnicate"], "--frobnicate"),
    (["reproduce", "fig2"], "figure"),
    (["reproduce"], "figure"),
    (["reproduce", "fig1", "--iterations", "0"], "--iterations"),
    (["reproduce", "fig1", "--iterations", "nan"], "--iterations"),
    (["reproduce", "fig1", "--seed", "-1"], "--seed"),
    (["reproduce", "fig1", "--seed", "0.5"], "--seed"),
    (["reproduce", "fig1", "--backend", "cuda"], "--backend"),
    (["reproduce", "fig1", "--backend", ""], "--backend"),
    (["reproduce", "fig1", "--output", ""], "--output"),
    *([(["tow", "--iterations", "0"], "--iterations"),
       (["tow", "--M", "0"], "--M"),
       (["tow", "--T", "-1"], "--T"),
       (["tow", "--alpha", "-1e-3"], "--alpha"),
       (["tow", "--alpha", "nan"], "--alpha"),
       (["tow", "--n-ilqr", "0"], "--n-ilqr"),
       (["tow", "--seed", "x"], "--seed"),
       (["tow", "--source", "mnist"], "--source")] if _TOW_READY else []),
    (["frobnicate"], "frobnicate"),
    ([], "command"),
]


@pytest.mark.parametrize("argv,word", USER_ERRORS, ids=[" ".join(a) or "<none>" for a, _ in USER_ERRORS])
def test_user_error_is_one_line_with_status_2(argv, word, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    line = _one_line_error(captured.err)
    assert word in line
    assert captured.out == ""


def test_backend_error_lists_the_valid_names(capsys):
    assert cli.main(["reproduce", "fig1", "--backend", "numbaa"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "numba" in line and "numpy" in line


def test_output_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("not a folder")
    assert cli.main(["reproduce", "fig1", "--output", str(target)]) == 2
    assert "not a folder" in _one_line_error(capsys.readouterr().err)


def test_output_folder_that_cannot_be_created_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    argv = ["reproduce", "fig1", "--output", str(blocker / "out"), "--no-progress"]
    assert cli.main(argv) == 2
    assert str(blocker) in _one_line_error(capsys.readouterr().err)
    with pytest.raises(OSError):
        cli.main(argv + ["--debug"])


def test_unavailable_cupy_backend_is_a_user_error(capsys):
    if "cupy" in metalqr.available_backends():
        pytest.skip("CuPy and a GPU are available here")
    assert cli.main(["reproduce", "fig1", "--backend", "cupy"]) == 2
    assert "cupy" in _one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize("exc", [metalqr.ValidationError("alpha must be > 0; got -1."),
                                 metalqr.ValidationTypeError("K must be real; got complex."),
                                 metalqr.CheckpointError("checkpoint 'x.json' is damaged;\n"
                                                         "delete it to start afresh."),
                                 metalqr.BackendUnavailableError("backend 'cupy' needs CuPy.")],
                         ids=lambda e: type(e).__name__)
def test_library_errors_are_one_line_and_debug_reraises(exc, monkeypatch, tmp_path, capsys,
                                                        no_compile):
    def boom(**kwargs):
        raise exc

    import metalqr.meta.figure1 as figure1
    monkeypatch.setattr(figure1, "reproduce_figure1", boom)
    argv = ["reproduce", "fig1", "--output", str(tmp_path / "out"), "--no-progress"]
    assert cli.main(argv) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert " ".join(str(exc).split()) in line      # newlines folded into the one line
    with pytest.raises(type(exc)):
        cli.main(["--debug"] + argv)
    with pytest.raises(type(exc)):                   # --debug after the sub-command too
        cli.main(argv + ["--debug"])
    # the lock of the output folder is released after the error
    assert not (tmp_path / "out" / ".metalqr.lock").exists()


def test_bugs_are_not_hidden(monkeypatch, tmp_path, no_compile):
    """Only user errors become one line; an internal bug keeps its traceback."""
    def boom(**kwargs):
        raise ZeroDivisionError("internal")

    import metalqr.meta.figure1 as figure1
    monkeypatch.setattr(figure1, "reproduce_figure1", boom)
    with pytest.raises(ZeroDivisionError):
        cli.main(["reproduce", "fig1", "--output", str(tmp_path)])


def test_console_user_error_subprocess_one_line_and_debug_traceback(tmp_path):
    res = _run("demo", "--iterations", "0")
    assert res.returncode == 2
    assert "--iterations" in _one_line_error(res.stderr)
    res = _run("--debug", "demo", "--iterations", "0")
    assert res.returncode == 2
    assert "Traceback (most recent call last)" in res.stderr


def test_folder_in_use_by_another_run_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "fig1"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".metalqr.lock").write_text(str(other.pid))
        assert cli.main(["reproduce", "fig1", "--output", str(out), "--iterations", "1",
                         "--no-progress"]) == 2
        line = _one_line_error(capsys.readouterr().err)
        assert "in use" in line and str(other.pid) in line
        assert not (out / "fig1.csv").exists()
    finally:
        other.kill()
        other.wait()


def test_stalled_setting_exits_non_zero_with_the_reason(monkeypatch, tmp_path, capsys, no_compile):
    rows = [{"setting": "d=1, k=1", "iterations": 300, "final_ratio": 0.01, "stop": "max_iterations"},
            {"setting": "d=20, k=10", "iterations": 50, "final_ratio": 7.56, "stop": "stalled"}]
    import metalqr.meta.figure1 as figure1
    monkeypatch.setattr(figure1, "reproduce_figure1", lambda **kw: rows)
    assert cli.main(["reproduce", "fig1", "--output", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "d=20, k=10" in err and "stalled" in err and "d=1, k=1" not in err
    monkeypatch.setattr(figure1, "reproduce_figure1", lambda **kw: rows[:1])
    assert cli.main(["reproduce", "fig1", "--output", str(tmp_path)]) == 0


def test_library_verdict_on_failures_is_used(monkeypatch, tmp_path, capsys, no_compile):
    class Verdict(list):            # the shape of metalqr.meta.figure1's summary
        def __init__(self, rows, failures):
            super().__init__(rows)
            self.failures = failures

        @property
        def ok(self):
            return not self.failures

    import metalqr.meta.figure1 as figure1
    reason = "d=20, k=10: stalled after 50 iterations (cost-gap ratio 0.842 -> 7.56)"
    monkeypatch.setattr(figure1, "reproduce_figure1", lambda **kw: Verdict([{"stop": "x"}], [reason]))
    assert cli.main(["reproduce", "fig1", "--output", str(tmp_path)]) == 1
    assert reason in capsys.readouterr().err
    monkeypatch.setattr(figure1, "reproduce_figure1", lambda **kw: Verdict([{"stop": "stalled"}], []))
    assert cli.main(["reproduce", "fig1", "--output", str(tmp_path)]) == 0


@pytest.mark.slow
def test_reproduce_fig1_runs_and_releases_its_lock(tmp_path):
    res = _run("reproduce", "fig1", "--quick", "--iterations", "2", "--no-progress",
               "--output", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    for name in ("fig1.csv", "summary.csv", "fig1.png"):
        assert (tmp_path / "out" / name).exists()
    assert not (tmp_path / "out" / ".metalqr.lock").exists()


# --------------------------------------------------------------------------- version and help
def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"metalqr {metalqr.__version__}"


def test_version_matches_the_package_metadata():
    import re
    text = (ROOT / "pyproject.toml").read_text()
    static = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    assert static, "pyproject.toml must state the version"
    assert static.group(1) == metalqr.__version__


def test_main_help_describes_the_program(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "console script" not in out
    for word in ("meta-policy", "LQR", "reproduce", "demo", "tow", "--version", "--debug",
                 "status 2"):
        assert word in out, word


SUBCOMMANDS = [pytest.param(n, marks=pytest.mark.xfail(
    reason="the tow sub-parser's help texts are being written on the tow branch", strict=True))
    if n == "tow" and not _TOW_READY else n for n in sorted(_subparsers(cli.build_parser()))]


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_option_has_help_and_shows_its_default(name, capsys):
    sub = _subparsers(cli.build_parser())[name]
    assert sub.description, f"metalqr {name} has no description"
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"metalqr {name} {label}: no help text"
    with pytest.raises(SystemExit):
        cli.main([name, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for action in sub._actions:
        if not action.option_strings or action.default is argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._HelpAction):
            continue
        text = " ".join(action.help.split())
        assert "default:" in text or "(default: " in out.split(action.option_strings[-1], 1)[1], (
            f"metalqr {name} {action.option_strings[-1]}: help does not show the default")


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_numeric_options_are_validated_by_type_functions(name):
    sub = _subparsers(cli.build_parser())[name]
    for action in sub._actions:
        if action.type in (int, float):
            pytest.fail(f"metalqr {name} {'/'.join(action.option_strings)} uses a bare "
                            f"{action.type.__name__}: validate it with a metalqr._validation check")


@pytest.mark.parametrize("text,ok", [("1", True), ("200", True), ("0", False), ("-1", False),
                                     ("1.0", False), ("x", False), ("", False)])
def test_count_type(text, ok):
    if ok:
        assert cli.count_option(text) == int(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            cli.count_option(text)


@pytest.mark.parametrize("text,ok", [("1e-3", True), ("2", True), ("0", False), ("-1e-3", False),
                                     ("nan", False), ("inf", False), ("abc", False)])
def test_positive_type(text, ok):
    if ok:
        assert cli.positive_option(text) == float(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            cli.positive_option(text)


def test_print_table_lives_in_the_shared_report_module():
    import io

    from metalqr._report import print_table
    assert cli._print_table is print_table
    buf = io.StringIO()
    print_table([{"a": 1.234567, "bb": "x"}, {"a": 2.0, "bb": "yy"}], out=buf)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3 and lines[1].split() == ["1.235", "x"]
    buf = io.StringIO()
    print_table([], out=buf)
    assert buf.getvalue() == ""


# --------------------------------------------------------------------------- first run
def test_cold_kernel_cache_is_announced_before_compiling(monkeypatch, capsys):
    from metalqr import _numba_cache
    monkeypatch.setattr(_numba_cache, "is_cold", lambda path: True)
    seconds = cli._compile_kernels("numba", delay=600)
    err = capsys.readouterr().err.splitlines()
    assert seconds is not None and seconds >= 0
    assert len(err) == 2 and "compiling" in err[0] and "compiled in" in err[1]


def test_warm_kernel_cache_is_silent_and_other_backends_skip(monkeypatch, capsys):
    from metalqr import _numba_cache
    cli._compile_kernels("numba", delay=600)          # make sure the kernels are compiled
    capsys.readouterr()
    monkeypatch.setattr(_numba_cache, "is_cold", lambda path: False)
    assert cli._compile_kernels("numba", delay=600) is None
    assert cli._compile_kernels("numpy") is None
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- malformed calls
from helpers import assert_named_error  # noqa: E402

MALFORMED = [   # (function, argument word, args, kwargs)
    (cli.demo_table, "max_iterations", (0,), {}),
    (cli.demo_table, "max_iterations", (-5,), {}),
    (cli.demo_table, "max_iterations", (2.5,), {}),
    (cli.demo_table, "max_iterations", ("20",), {}),
    (cli.demo_table, "max_iterations", (True,), {}),
    (cli.demo_table, "max_iterations", (None,), {}),
    (cli.main, "argv", ("demo --iterations 20",), {}),
    (cli.main, "argv", (5,), {}),
    (cli.main, "argv", ([b"demo"],), {}),
    (cli.main, "argv", (["demo", 20],), {}),
]


@pytest.mark.parametrize("fn,word,args,kwargs", MALFORMED,
                         ids=[f"{f.__name__}-{i}" for i, (f, *_) in enumerate(MALFORMED)])
def test_malformed_calls_raise_named_errors(fn, word, args, kwargs):
    assert_named_error(fn, word, *args, **kwargs)


# --------------------------------------------------------------------------- sweeps and --seeds
SWEEP_TOML = ('[study]\nname = "cli"\nseeds = 2\n[base]\nd = 1\nk = 1\nn_iterations = 3\n'
              'M = 5\nM_prime = 5\nbackend = "numpy"\n')


def test_sweep_runs_a_tiny_study_and_resumes(tmp_path, capsys):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP_TOML)
    store = tmp_path / "store"
    argv = ["sweep", str(cfg), "--store", str(store), "--serial", "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "2 runs (2 run now" in out and "summary.csv" in out
    assert len(os.listdir(store / "runs")) == 2
    assert (store / "report" / "cli" / "summary.csv").exists()
    assert (store / "report" / "cli" / "curves.png").exists()
    assert cli.main(argv) == 0                        # finished runs are skipped
    assert "0 run now, 2 already stored" in capsys.readouterr().out


@pytest.mark.parametrize("text,word", [("[base]\nalpah = 1e-3\n", "alpah"),
                                       ("[base]\nalpha = -1.0\n", "alpha"),
                                       ("[base]\nalpha = [1\n", "TOML")])
def test_sweep_bad_config_is_one_line_with_status_2(tmp_path, capsys, text, word):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    assert cli.main(["sweep", str(cfg), "--store", str(tmp_path / "store"), "--serial"]) == 2
    captured = capsys.readouterr()
    assert word in _one_line_error(captured.err)
    assert not (tmp_path / "store" / "runs").exists() or not os.listdir(tmp_path / "store" / "runs")


@pytest.mark.parametrize("argv,word", [
    (["sweep", "missing.toml", "--serial"], "missing.toml"),
    (["sweep", "s.toml", "--workers", "0"], "--workers"),
    (["sweep", "s.toml", "--retries", "-1"], "--retries"),
    (["sweep"], "CONFIG"),
    (["reproduce", "fig1", "--seeds", "0"], "--seeds"),
    (["reproduce", "fig1", "--seeds", "two"], "--seeds"),
    (["reproduce", "fig1", "--seeds", "2", "--workers", "x"], "--workers"),
])
def test_sweep_and_seeds_user_errors(argv, word, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    assert word in _one_line_error(capsys.readouterr().err)


def test_reproduce_seeds_goes_through_the_experiments_engine(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    calls = []
    import metalqr.experiments as ex
    monkeypatch.setattr(ex, "fig1_seeds_command", lambda args: calls.append(args) or 0)
    assert cli.main(["reproduce", "fig1", "--quick", "--seeds", "3", "--serial", "--workers", "2"]) == 0
    (args,) = calls
    assert (args.seeds, args.serial, args.workers, args.quick) == (3, True, 2, True)
    assert args.store == os.path.join("results", "fig1-seeds")


@pytest.mark.slow
def test_reproduce_seeds_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["reproduce", "fig1", "--quick", "--seeds", "1", "--iterations", "1", "--backend", "numpy",
            "--serial", "--no-progress"]
    assert cli.main(argv) == 0
    assert "3 runs (3 run now" in capsys.readouterr().out
    assert len(os.listdir(tmp_path / "results" / "fig1-seeds" / "runs")) == 3


# --------------------------------------------------------------------------- backend registry
def test_backend_choices_and_help_come_from_the_registry():
    from metalqr.rollouts import backend_help, known_backends
    rep = _subparsers(cli.build_parser())["reproduce"]
    (action,) = [a for a in rep._actions if "--backend" in a.option_strings]
    assert tuple(action.choices) == tuple(known_backends())
    first = backend_help().split(";")[0]
    assert " ".join(first.split()) in " ".join(action.help.split())


# --------------------------------------------------------------------------- Omniglot
def _omniglot_helpers():
    pytest.importorskip("PIL")
    sys.path.insert(0, str(ROOT / "tests"))
    import test_omniglot
    return test_omniglot


def test_tow_runs_prints_the_table(tmp_path, capsys):
    om = _omniglot_helpers()
    om.make_runs(tmp_path / "all_runs")
    from metalqr.tow.omniglot import evaluate_one_shot_runs
    ref = evaluate_one_shot_runs(str(tmp_path / "all_runs"), None, distance="euclidean", size=4)
    assert cli.main(["tow-runs", str(tmp_path / "all_runs"), "--size", "4"]) == 0
    out = capsys.readouterr().out
    assert ref.table() in out and "| method | error (%) |" in out
    assert cli.main(["tow-runs", str(tmp_path / "all_runs"), "--distance", "modified_hausdorff"]) == 0
    ref = evaluate_one_shot_runs(str(tmp_path / "all_runs"), None, distance="modified_hausdorff")
    assert ref.table() in capsys.readouterr().out


@pytest.mark.parametrize("argv,word", [
    (["tow-runs", "no_such_runs"], "no_such_runs"),
    (["tow-runs"], "PATH"),
    (["tow-runs", ".", "--distance", "manhattan"], "--distance"),
    (["tow-runs", ".", "--size", "0"], "--size"),
    (["tow", "--source", "omniglot"], "--omniglot"),
    (["tow", "--source", "omniglot", "--omniglot", "no_such_dir"], "no_such_dir"),
    (["tow", "--n-way", "5"], "--n-way"),
    (["tow", "--source", "omniglot", "--omniglot", ".", "--rotations", "0,45"], "--rotations"),
    (["tow", "--source", "omniglot", "--omniglot", ".", "--n-way", "1"], "--n-way"),
])
def test_omniglot_user_errors(argv, word, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    assert word in _one_line_error(capsys.readouterr().err)


def test_tow_source_omniglot_builds_the_task_source(tmp_path, monkeypatch):
    om = _omniglot_helpers()
    root = om.make_tree(tmp_path / "omni")
    seen = {}
    from metalqr import tow

    def fake_run(source, learner, strategies, **kwargs):
        seen["source"] = source
        raise KeyboardInterrupt           # stop before training (exit status 130)
    monkeypatch.setattr(tow, "run_experiment", fake_run)
    argv = ["tow", "--source", "omniglot", "--omniglot", root, "--n-way", "2", "--k-shot", "1",
            "--k-query", "2", "--rotations", "0,90", "--test-alphabets", "1", "--split-seed", "3",
            "--cross-alphabet", "--output", str(tmp_path / "out"), "--no-progress"]
    assert cli.main(argv) == 130
    src = seen["source"]
    assert (src.n_way, src.k_shot, src.k_query, tuple(src.rotations), src.test_alphabets,
            src.split_seed, src.cross_alphabet) == (2, 1, 2, (0, 90), 1, 3, True)
    assert cli.main(argv[:5] + ["--output", str(tmp_path / "out2"), "--no-progress"]) == 130
    src = seen["source"]
    assert (src.n_way, src.rotations, src.cross_alphabet) == (5, (0,), False)


# ---------------------------------------------------------------- fixtow: refused flag combinations
@pytest.mark.parametrize("argv,word", [
    (["tow", "--preset", "paper", "--quick", "--iterations", "2", "--n-test", "10", "--n-val", "4"],
     "--preset paper"),
    (["tow", "--strategies", "uniform", "--terminal-cost", "validation"], "--terminal-cost"),
    (["tow", "--strategies", "uniform", "exploration", "--line-search", "paper"], "--line-search"),
    (["tow", "--strategies", "uniform", "--value-model", "full"], "--value-model"),
    (["tow", "--strategies", "uniform", "--n-ilqr", "3"], "--n-ilqr"),
    (["tow", "--strategies", "exploitation", "--beta-u", "5"], "--beta-u"),
    (["tow", "--source", "classification", "--gamma", "0.3"], "--gamma"),
])
def test_tow_conflicting_flags_are_refused(argv, word, tmp_path, capsys):
    assert cli.main(argv + ["--output", str(tmp_path / "o"), "--no-progress"]) == 2
    err = _one_line_error(capsys.readouterr().err)
    assert word in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("tow_*.json"))


def test_tow_protonet_and_non_tow_runs_record_only_used_settings(tmp_path, capsys):
    import json
    out = tmp_path / "o"
    assert cli.main(["tow", "--source", "classification", "--strategies", "uniform", "--iterations", "1",
                     "--T", "2", "--M", "2", "--n-test", "2", "--n-val", "2", "--hidden", "4", "--no-progress",
                     "--output", str(out)]) == 0
    text = capsys.readouterr().out
    settings_line = next(line for line in text.splitlines() if line.startswith("settings"))
    for word in ("gamma=", "inner_steps=", "beta_u=", "n_ilqr=", "line_search=", "terminal_cost=", "value_model="):
        assert word not in settings_line
    st = json.loads((out / "tow_classification.json").read_text())["settings"]
    assert st["gamma"] is None and st["learner_kind"] == "protonet"
    for flag in ("--gamma", "--inner-steps", "--beta-u", "--n-ilqr", "--line-search", "--terminal-cost",
                 "--value-model"):
        assert flag not in st["command"]
    # the recorded command reruns (it names no refused flag)
    rerun = st["command"].split()[1:] + ["--output", str(tmp_path / "again"), "--no-progress"]
    assert cli.main(rerun) == 0
