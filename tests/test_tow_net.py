"""``metalqr tow --net {mlp,conv}`` and ``make_learner(net=...)``: the ConvNet learner on
image sources (issue 17), run end to end through the CLI on a tiny generated Omniglot tree."""

import json
import os
import sys

import numpy as np
import pytest

pytest.importorskip("PIL")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_omniglot as om  # noqa: E402

from metalqr import cli  # noqa: E402
from metalqr.tow import MAML, MLP, ConvNet, ProtoNet, make_learner  # noqa: E402
from metalqr.tow.omniglot import OmniglotTasks  # noqa: E402

SIDE = 28          # the CLI reads Omniglot at 28 x 28, so the drawings must be at least that big


def make_tree28(root):
    """Two alphabets of 2 characters x 4 drawings, 28 x 28 pixels."""
    for a in ("Alpha", "Beta"):
        for c in (1, 2):
            for d in range(1, 5):
                om.write_png(os.path.join(root, "images_background", a, f"character{c:02d}", f"{c:02d}_{d:02d}.png"),
                             om.drawing(1000 * (ord(a[0]) - 64) + 10 * c + d, SIDE))
    return str(root)


@pytest.fixture(scope="module")
def tree28(tmp_path_factory):
    return make_tree28(tmp_path_factory.mktemp("omni28"))


ARGS = ["--n-way", "2", "--k-shot", "1", "--k-query", "1", "--test-alphabets", "1", "--iterations", "1",
        "--T", "1", "--M", "2", "--n-test", "2", "--n-val", "2", "--strategies", "uniform", "tow",
        "--no-progress"]


def run_tow(tree, out, *extra):
    assert cli.main(["tow", "--source", "omniglot", "--omniglot", tree, *ARGS, "--output", str(out), *extra]) == 0
    with open(os.path.join(out, "tow_omniglot.json")) as f:
        return json.load(f)


def settings_of(saved):
    return [saved["settings"]]


@pytest.mark.parametrize("learner", ["protonet", "fomaml"])
def test_cli_conv_on_omniglot_trains_a_convnet(tree28, tmp_path, capsys, learner):
    saved = run_tow(tree28, tmp_path / "out", "--net", "conv", "--channels", "2", "--learner", learner)
    out = capsys.readouterr().out
    assert "network: conv (ConvNet" in out and "2 channels x 3 blocks" in out
    for s in settings_of(saved):
        assert s["net"] == "conv" and s["channels"] == 2 and s["hidden"] is None
        assert "ConvNet" in s["learner"] and "MLP" not in s["learner"]
        assert "--net conv --channels 2" in s["command"]
    # the same learner built directly has the size the run reports (3 blocks of 2 maps: 28 -> 14 -> 7 -> 3)
    src = OmniglotTasks(tree28, n_way=2, k_shot=1, k_query=1, test_alphabets=1)
    ref = make_learner(learner, src, net="conv", channels=2)
    assert isinstance(ref.net, ConvNet) and ref.net.blocks == 3 and ref.net.channels == 2
    assert all(s["n_parameters"] == ref.net.size for s in settings_of(saved))


def test_cli_default_net_is_conv_only_for_paper_omniglot(tree28, tmp_path, capsys):
    plain = run_tow(tree28, tmp_path / "plain")
    assert {s["net"] for s in settings_of(plain)} == {"mlp"}
    assert all("MLP" in s["learner"] and s["hidden"] == 40 for s in settings_of(plain))
    paper = run_tow(tree28, tmp_path / "paper", "--preset", "paper", "--channels", "2")
    assert {s["net"] for s in settings_of(paper)} == {"conv"}
    assert all("ConvNet" in s["learner"] for s in settings_of(paper))
    override = run_tow(tree28, tmp_path / "override", "--preset", "paper", "--net", "mlp", "--hidden", "8")
    assert {s["net"] for s in settings_of(override)} == {"mlp"}
    # the preset's default network (conv) overridden by --net mlp is recorded like any override
    assert all(s["preset_overrides"]["net"] == ["conv", "mlp"] for s in settings_of(override))
    assert all("net" not in s["preset_overrides"] for s in settings_of(paper))


def test_make_learner_conv_shapes_and_mlp_default(tree28):
    src = OmniglotTasks(tree28, n_way=2, k_shot=1, k_query=1, test_alphabets=1)
    proto = make_learner("protonet", src, net="conv", channels=3, embedding=5)
    assert isinstance(proto, ProtoNet) and isinstance(proto.net, ConvNet)
    assert (proto.net.n_in, proto.net.n_out, proto.net.loss) == (784, 5, "mse")
    fo = make_learner("fomaml", src, net="conv", channels=3, gamma=0.1, inner_steps=2)
    assert isinstance(fo, MAML) and fo.first_order and (fo.gamma, fo.inner_steps) == (0.1, 2)
    assert (fo.net.n_out, fo.net.loss) == (2, "ce")
    x = fo.init(0)
    assert x.shape == (fo.net.size,) and np.all(np.isfinite(x))
    assert isinstance(make_learner("protonet", src).net, MLP)            # default net stays the MLP


@pytest.mark.parametrize("size,blocks", [(2, 1), (5, 2), (8, 3), (28, 3)])
def test_conv_block_count_follows_image_side(size, blocks):
    from metalqr.tow import ImageFolderTasks
    net = make_learner("protonet", ImageFolderTasks(".", size=size), net="conv", channels=2).net
    assert net.blocks == blocks and net.side == size and (size >> blocks) >= 1


def test_net_error_lists_the_choices_and_suggests_the_close_one():
    from helpers import assert_named_error
    from metalqr.tow import DigitsTasks
    err = str(assert_named_error(make_learner, "net", "protonet", DigitsTasks(), net="comv"))
    assert "'mlp', 'conv'" in err and "Did you mean 'conv'?" in err
