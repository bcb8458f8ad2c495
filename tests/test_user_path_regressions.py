"""Regression tests for defects found on the study / TOW user path (one test per defect)."""

from __future__ import annotations

import os
import stat

import pytest

from metalqr.experiments import sweep_main


def _study_file(tmp_path, body):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[study]\nname = "t"\n' + body)
    return cfg


# ------------------------------------------------- 1. every run fails: reasons shown, exit 1

def test_sweep_where_every_run_fails_shows_the_reasons_and_exits_1(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    cfg = _study_file(tmp_path, f'[[runs]]\nkind = "tow"\nsource = "images"\n'
                                f'data = "{missing.as_posix()}"\n')
    rc = sweep_main([str(cfg), "--store", str(tmp_path / "store"), "--serial", "--no-progress",
                     "--retries", "0"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "did not finish: FileNotFoundError" in err
    assert str(missing) in err
    assert "holds no finished run" not in err


# ------------------------------------------------- 2. store files get the umask's mode

@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions")
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_writes_honour_the_umask_like_open(tmp_path, mask):
    from metalqr._checkpoint import atomic_write_bytes, atomic_write_text
    old = os.umask(mask)
    try:
        plain = tmp_path / "plain.txt"
        with open(plain, "w") as fh:
            fh.write("x")
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_bytes(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    want = 0o666 & ~mask
    assert stat.S_IMODE(plain.stat().st_mode) == want
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == want
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == want
    assert os.umask(old) == old   # the umask is left as it was
    os.umask(old)


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions")
def test_store_files_are_group_readable_with_umask_022(tmp_path, capsys):
    cfg = _study_file(tmp_path, '[base]\nd = 1\nk = 1\nn_iterations = 2\nM = 3\nM_prime = 3\n'
                                'backend = "numpy"\n')
    store = tmp_path / "store"
    old = os.umask(0o022)
    try:
        assert sweep_main([str(cfg), "--store", str(store), "--serial", "--no-progress"]) == 0
    finally:
        os.umask(old)
    files = list((store / "runs").glob("*.json")) + [store / "report" / "t" / "summary.csv",
                                                      store / "report" / "t" / "curves.csv"]
    assert len(files) >= 3
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


# ------------------------------------------------- 3. TOW divergence names the right step size

TINY_TOW = {"kind": "tow", "n_iterations": 3, "T": 2, "M": 2, "hidden": 8, "n_test": 6,
            "n_val": 4}


@pytest.mark.parametrize("extra, names, not_names", [
    ({"alpha": 1e300, "strategy": "tow"}, ["alpha (= 1e+300)"], ["g contains", "ValidationError"]),
    ({"alpha": 1e300, "strategy": "uniform"}, ["alpha (= 1e+300)"], []),
    ({"gamma": 1e200, "strategy": "uniform"}, ["gamma (= 1e+200)"], ["alpha"]),
    ({"gamma": 1e200, "strategy": "tow"}, ["gamma (= 1e+200)"], ["alpha", "g contains"]),
])
def test_tow_divergence_names_the_step_size_to_reduce(extra, names, not_names):
    from metalqr.experiments._runner import execute_run, normalize_run
    with _no_warning_check():
        record = execute_run(normalize_run({**TINY_TOW, **extra}))
    assert record["status"] == "diverged", record["error"]
    assert record["error"].startswith("TrainingDivergedError")
    for word in names:
        assert word in record["error"]
    for word in not_names:
        assert word not in record["error"]


def _no_warning_check():
    import contextlib
    import warnings

    @contextlib.contextmanager
    def quiet():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    return quiet()


# ------------------------------------------------- 4. a source written as a key: documented hint

@pytest.mark.parametrize("body, key", [
    ('[base]\nkind = "tow"\ndigits = 3\n', "digits"),
    ('[base]\ndigits = 3\n[[runs]]\nkind = "tow"\n', "digits"),
    ('[[runs]]\nkind = "tow"\ndigits = 3\n', "digits"),
    ('[grid]\nimages = ["x"]\n[[runs]]\nkind = "tow"\n', "images"),
    ('[[runs]]\nsinusoid = true\n', "sinusoid"),
])
def test_a_source_written_as_a_key_gets_the_documented_hint(tmp_path, body, key):
    from metalqr import ValidationError
    from metalqr.experiments import load_study
    cfg = _study_file(tmp_path, body)
    with pytest.raises(ValidationError) as info:
        load_study(str(cfg))
    msg = str(info.value)
    assert f"did you mean source = {key!r}?" in msg.lower()
    assert f"give source = {key!r}" in msg     # the text docs/experiments.md quotes


# ------------------------------------------------- 5. metalqr tow --n-way/--k-shot agree with studies

def _tow_args(*argv):
    from metalqr import cli
    return cli.build_parser().parse_args(["tow", *argv])


@pytest.mark.parametrize("source, flag, key, value", [
    ("classification", "--k-shot", "k_shot", 2),
    ("classification", "--n-way", "n_way", 3),
    ("anyshot", "--n-way", "n_way", 4),
    ("sinusoid", "--k-shot", "k_shot", 3),
    ("sinusoid", "--k-query", "k_query", 4),
    ("classification", "--k-query", "k_query", 2),
])
def test_tow_shape_flags_reach_every_source_a_study_allows(source, flag, key, value):
    from metalqr import cli
    from metalqr.experiments import TOW_SOURCE_OPTIONS, normalize_run
    tasks = cli._tow_source(_tow_args("--source", source, flag, str(value)))
    assert getattr(tasks, key) == value
    assert source in TOW_SOURCE_OPTIONS.get(key, (source,))
    assert normalize_run({"kind": "tow", "source": source, key: value})[key] == value


@pytest.mark.parametrize("source, flag, key", [
    ("sinusoid", "--n-way", "n_way"),
    ("anyshot", "--k-shot", "k_shot"),
])
def test_tow_shape_flags_refused_like_the_study_keys(source, flag, key):
    from metalqr import ValidationError, cli
    from metalqr.experiments import normalize_run
    with pytest.raises(ValidationError) as cli_err:
        cli._tow_source(_tow_args("--source", source, flag, "3"))
    with pytest.raises(ValidationError) as study_err:
        normalize_run({"kind": "tow", "source": source, key: 3})
    text = str(cli_err.value)
    assert text.startswith(f"{flag} applies only to source ")
    assert "only apply" not in text
    # the same sentence as the study's, with the flag for the key
    tail = str(study_err.value).split(f"{key} applies only to source ", 1)[1]
    assert text == f"{flag} applies only to source " + tail.replace(f"Remove {key}.",
                                                                    f"Remove {flag}.")


@pytest.mark.parametrize("argv, words", [
    (["--source", "sinusoid", "--rotations", "0,90"], ["--rotations applies only", "'omniglot'"]),
    (["--source", "digits", "--split-seed", "1", "--cross-alphabet"],
     ["--split-seed, --cross-alphabet apply only", "'omniglot'"]),
])
def test_omniglot_only_flags_grammar(argv, words):
    from metalqr import ValidationError, cli
    with pytest.raises(ValidationError) as info:
        cli._tow_source(_tow_args(*argv))
    for word in words:
        assert word in str(info.value)


def test_an_omniglot_folder_without_drawings_names_the_flag(tmp_path, capsys):
    from metalqr import cli
    rc = cli.main(["tow", "--source", "omniglot", "--omniglot", str(tmp_path), "--quick",
                   "--no-progress", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--omniglot: no drawings" in err
    assert "path:" not in err


def test_a_study_omniglot_folder_without_drawings_names_the_key_data(tmp_path):
    from metalqr.experiments._runner import execute_run, normalize_run
    empty = tmp_path / "omni"
    empty.mkdir()
    record = execute_run(normalize_run({**TINY_TOW, "source": "omniglot", "data": str(empty)}))
    assert record["status"] == "failed"
    assert "ValidationError: data: no drawings" in record["error"]


# ------------------------------------------------- 6. case-insensitive close-match suggestions

@pytest.mark.parametrize("run, key, suggestion", [
    ({"kind": "tow", "strategy": "TOW"}, "strategy", "tow"),
    ({"kind": "tow", "strategy": "Uniform"}, "strategy", "uniform"),
    ({"kind": "tow", "strategy": "EXPLOITATION"}, "strategy", "exploitation"),
    ({"kind": "tow", "optimizer": "ADAM"}, "optimizer", "adam"),
    ({"kind": "tow", "source": "SINUSOID"}, "source", "sinusoid"),
])
def test_strategy_and_other_names_suggest_ignoring_case(run, key, suggestion):
    from metalqr import ValidationError
    from metalqr.experiments import normalize_run
    with pytest.raises(ValidationError) as info:
        normalize_run(run)
    assert str(info.value).startswith(f"{key} must be one of")
    assert str(info.value).endswith(f"Did you mean {suggestion!r}?")


def test_get_strategy_suggests_ignoring_case():
    from metalqr import ValidationError, tow
    with pytest.raises(ValidationError, match="Did you mean 'tow'"):
        tow.get_strategy("TOW")


def test_check_choice_gives_no_suggestion_for_an_unrelated_name():
    from metalqr import ValidationError
    from metalqr._validation import check_choice
    with pytest.raises(ValidationError) as info:
        check_choice("QQQQ", "strategy", ("uniform", "tow"))
    assert "Did you mean" not in str(info.value)


# ------------------------------------------------- 7. benchmarks/bench_lqr_core.py --repeat

def _bench_module():
    import importlib.util
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        "bench_lqr_core_under_test", os.path.join(root, "benchmarks", "bench_lqr_core.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("value, word", [("0", "must be >= 1"), ("-3", "must be >= 1"),
                                         ("x", "expected an integer"), ("1.5", "expected")])
def test_bench_repeat_refuses_non_positive_values(value, word, capsys):
    bench = _bench_module()
    with pytest.raises(SystemExit) as info:
        bench.main(["--repeat", value, "--only", "cost", "--no-jax"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--repeat" in err and word in err


def test_bench_only_cost_uses_repeat(monkeypatch, capsys):
    bench = _bench_module()
    seen = []

    def fake_best_time(fn, repeat=3, min_time=0.0):
        seen.append(repeat)
        return 1.0
    monkeypatch.setattr(bench, "best_time", fake_best_time)
    monkeypatch.setattr(bench, "blas_report", lambda: [])
    bench.main(["--quick", "--only", "cost", "--repeat", "7", "--no-jax"])
    assert seen and set(seen) == {7}
    assert "best of 7" in capsys.readouterr().out


def test_sweep_prints_why_a_stored_run_failed(tmp_path, capsys):
    empty = tmp_path / "omni"
    empty.mkdir()
    cfg = _study_file(tmp_path, f'[[runs]]\nkind = "tow"\nsource = "omniglot"\n'
                                f'data = "{empty.as_posix()}"\n')
    rc = sweep_main([str(cfg), "--store", str(tmp_path / "store"), "--serial", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err      # a failed run is stored (n_failed), not an error
    assert "failed (stored with status 'failed', not retried): ValidationError: data: no " \
           "drawings" in captured.err
