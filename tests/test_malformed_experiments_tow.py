"""Malformed TOW study keys (metalqr.experiments, ``kind = "tow"``): at least four bad values
per key added for ``metalqr tow`` parity (wrong type, out of range, unknown name with a
close-match suggestion, key on the wrong source / network / learner / kind), each raising a
metalqr ValidationError whose message names the key; in Python and in a study file."""

from __future__ import annotations

import pytest

from metalqr.exceptions import ValidationError
from metalqr.experiments import Study, load_study, normalize_run
from helpers import assert_named_error

T = {"kind": "tow"}
OMNI = {"kind": "tow", "source": "omniglot", "data": "omniglot-copy"}
IMG = {"kind": "tow", "source": "images", "data": "image-root"}
CLS = {"kind": "tow", "source": "classification"}

# (run settings, word the message must name, a word it must also hold or None)
BAD = [
    # preset
    ({**CLS, "preset": "papr"}, "preset", "Did you mean 'paper'"),
    ({**CLS, "preset": "Paper"}, "preset", "paper"),
    ({**CLS, "preset": 1}, "preset", None),
    ({**CLS, "preset": ["paper"]}, "preset", None),
    ({**T, "preset": "paper"}, "preset", "sinusoid"),                       # a regression source
    ({"preset": "paper"}, "preset", "tow"),                                 # a zo_maml run
    # net
    ({**OMNI, "net": "convv"}, "net", "Did you mean 'conv'"),
    ({**OMNI, "net": "cnn"}, "net", "mlp"),
    ({**OMNI, "net": 3}, "net", None),
    ({**T, "net": "conv"}, "net", "sinusoid"),                              # not a source of images
    ({**CLS, "net": "conv"}, "net", "classification"),
    ({**OMNI, "net": "conv", "learner": "maml"}, "net", "maml"),
    ({"net": "mlp"}, "net", "tow"),
    # channels
    ({**OMNI, "net": "conv", "channels": 0}, "channels", None),
    ({**OMNI, "net": "conv", "channels": 2.5}, "channels", None),
    ({**OMNI, "net": "conv", "channels": "eight"}, "channels", None),
    ({**OMNI, "net": "conv", "channels": True}, "channels", None),
    ({**T, "channels": 4}, "channels", "conv"),                             # on the MLP
    ({**CLS, "channels": 4}, "channels", "hidden"),
    ({"channels": 4}, "channels", "tow"),
    # hidden on the ConvNet
    ({**OMNI, "net": "conv", "hidden": 8}, "hidden", "channels"),
    ({**OMNI, "preset": "paper", "hidden": 8}, "hidden", "conv"),           # the preset's ConvNet
    # inner_steps
    ({**T, "inner_steps": 0}, "inner_steps", None),
    ({**T, "inner_steps": -1}, "inner_steps", None),
    ({**T, "inner_steps": 1.5}, "inner_steps", None),
    ({**T, "inner_steps": "one"}, "inner_steps", None),
    ({**CLS, "inner_steps": 2}, "inner_steps", "ProtoNet"),                 # learner protonet
    ({"inner_steps": 2}, "inner_steps", "tow"),
    # curve_smoothing
    ({**T, "curve_smoothing": 0.0}, "curve_smoothing", None),
    ({**T, "curve_smoothing": 1.5}, "curve_smoothing", None),
    ({**T, "curve_smoothing": -0.1}, "curve_smoothing", None),
    ({**T, "curve_smoothing": float("nan")}, "curve_smoothing", None),
    ({**T, "curve_smoothing": "ema"}, "curve_smoothing", None),
    ({"curve_smoothing": 0.1}, "curve_smoothing", "tow"),
    # max_shot (source anyshot)
    ({**T, "source": "anyshot", "max_shot": 0}, "max_shot", None),
    ({**T, "source": "anyshot", "max_shot": 2.5}, "max_shot", None),
    ({**T, "source": "anyshot", "max_shot": "five"}, "max_shot", None),
    ({**CLS, "max_shot": 3}, "max_shot", "classification"),                 # wrong source
    ({**T, "max_shot": 3}, "max_shot", "sinusoid"),
    ({"max_shot": 3}, "max_shot", "tow"),
    ({**T, "source": "anyshot", "k_shot": 2}, "k_shot", "anyshot"),         # anyshot draws its shots
    # the sources anyshot / digits / images and their options
    ({**T, "source": "anyshott"}, "source", "Did you mean 'anyshot'"),
    ({**T, "source": "image"}, "source", "images"),
    ({**T, "source": "digit"}, "source", "digits"),
    ({**T, "source": 5}, "source", None),
    ({**T, "source": "images"}, "data", "images"),                          # needs its root
    ({**IMG, "data": 7}, "data", None),
    ({**IMG, "data": ""}, "data", None),
    ({**T, "source": "digits", "data": "x"}, "data", "digits"),             # wrong source
    ({**T, "source": "anyshot", "data": "x"}, "data", "anyshot"),
    ({**T, "source": "digits", "n_way": 1}, "n_way", None),
    ({**T, "source": "digits", "learner": "protonett"}, "learner", "protonet"),
    ({**IMG, "k_query": 0}, "k_query", None),
    ({**T, "source": "anyshot", "preset": "papr"}, "preset", "paper"),
    ({"source": "digits"}, "source", "tow"),                                # a zo_maml run
    ({**T, "digits": 3}, "digits", "source = 'digits'"),                    # a source as a key
    ({**T, "images": "root"}, "images", "data = ROOT"),                     # metalqr tow --images
    ({**T, "anyshot": True}, "anyshot", "source = 'anyshot'"),
    ({"images": "root"}, "images", "source = 'images'"),
]


@pytest.mark.parametrize("run,word,also", BAD, ids=[f"{w}-{i}" for i, (_, w, _) in enumerate(BAD)])
def test_bad_tow_key_raises_a_named_validation_error(run, word, also):
    err = assert_named_error(normalize_run, word, run, exc=ValidationError)
    if also is not None:
        assert also in str(err)


def test_every_new_key_has_at_least_four_malformed_cases():
    counts = {}
    for _, word, _ in BAD:
        counts[word] = counts.get(word, 0) + 1
    for key in ("preset", "net", "channels", "inner_steps", "curve_smoothing", "max_shot",
                "source", "data"):
        assert counts.get(key, 0) >= 4, key


@pytest.mark.parametrize("text,word", [
    ('[base]\nkind = "tow"\nsource = "sinusoid"\ndigits = 3\n', "digits"),   # not a key
    ('[base]\nkind = "tow"\nsource = "sinusoid"\nmax_shot = 3\n', "max_shot"),
    ('[base]\nkind = "tow"\nsource = "classification"\n[grid]\npreset = ["paper", "papr"]\n',
     "preset"),
    ('[base]\nkind = "tow"\n[grid]\nnet = ["mlp", "conv"]\n', "net"),
    ('[base]\nkind = "tow"\ncurve_smoothing = 2.0\n', "curve_smoothing"),
])
def test_bad_tow_study_files_name_the_key(tmp_path, text, word):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert_named_error(load_study, word, path, exc=ValidationError)


def test_grid_over_the_new_keys_builds():
    study = Study.grid(base={"kind": "tow", "source": "classification"},
                       grid={"preset": ["paper"], "curve_smoothing": [0.1, 0.5],
                             "M": [2, 10]}, seeds=1)
    assert len(study) == 4 and len(set(study.ids)) == 4


@pytest.mark.parametrize("args,word", [
    ((None, "sinusiod"), "source"), ((None, 3), "source"), ((None, None), "source"),
    ((1, "omniglot"), "preset"), ((["paper"], "omniglot"), "preset"),
])
def test_bad_tow_default_net_arguments(args, word):
    from metalqr.experiments import tow_default_net
    assert_named_error(tow_default_net, word, *args, exc=ValidationError)
