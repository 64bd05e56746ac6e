"""CUDA graphs for the text step: used, checked against the eager tower, and dropped when wrong.

There is no GPU here, so `torch.cuda.make_graphed_callables` is replaced by a stand-in with the
same contract: the callable is run on a static input buffer, and every call returns the same
output buffer and gradient buffer, overwritten by the next call (as a replayed graph does). A
training run through the stand-in must equal an eager run; a capture that fails or a graph that
computes something else must leave the run eager, with one warning.
"""

from __future__ import annotations

import json

import pytest
import torch

import vipcli.graphs
from vipcli.fitting import fit_sgd, fit_sgd_many

from vipcli.methods import MethodSetup, build_method

from test_batched_fit import NAMES, SYMPTOMS, backbone, run_setup  # noqa: F401 (backbone is a fixture)


class StaticBuffers:
    """Stand-in for `torch.cuda.make_graphed_callables`, with a replayed graph's buffer reuse:
    one input, output and gradient buffer, and one set of activations that every forward replay
    overwrites and the backward reads (so two forwards before one backward go wrong, as on a GPU)."""

    def __init__(self, scale: float = 1.0):
        self.scale = scale  # 1.0 computes what the callable does; anything else is a wrong graph
        self.captures = 0
        self.replays = 0

    def __call__(self, fn, sample_args):
        (static_input,) = sample_args
        maker = self
        maker.captures += 1
        buffers: dict = {}

        class Replayed(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                maker.replays += 1
                with torch.no_grad():
                    static_input.copy_(x)
                with torch.enable_grad():
                    inp = static_input.detach().requires_grad_(True)
                    out = fn(inp) * maker.scale
                buffers["activations"] = (inp, out)  # the graph's memory, overwritten by every replay
                if "out" not in buffers:
                    buffers["out"] = torch.empty_like(out)
                buffers["out"].copy_(out.detach())
                return buffers["out"].detach()

            @staticmethod
            def backward(ctx, grad):
                inp, out = buffers["activations"]  # whatever the last replay left there
                (grad_input,) = torch.autograd.grad(out, inp, grad, retain_graph=True)
                if "grad" not in buffers:
                    buffers["grad"] = torch.empty_like(grad_input)
                buffers["grad"].copy_(grad_input)
                return buffers["grad"].detach()

        return Replayed.apply


class FailingCapture:
    captures = 0

    def __call__(self, fn, sample_args):
        self.captures += 1
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")


@pytest.fixture(autouse=True)
def no_earlier_failure(monkeypatch):
    """A capture failure in one test must not turn graphs off in the next (it is process-wide)."""
    monkeypatch.setattr(vipcli.graphs, "_process_failure", None)


@pytest.fixture
def use_maker(monkeypatch):
    """Pretend the CPU is a CUDA device whose graphs are made by `maker`."""

    def install(maker):
        monkeypatch.setattr(vipcli.graphs, "_towers", vipcli.graphs.weakref.WeakKeyDictionary())
        monkeypatch.setattr(vipcli.graphs, "graph_maker", lambda device: maker)
        return maker

    return install


def fitted(method_id, backbone, shots=2, seed=1):
    method, data, context = run_setup(method_id, backbone, shots, seed)
    return fit_sgd(method, data, context), method


def same_training(first, second):
    (result_a, method_a), (result_b, method_b) = first, second
    assert result_a["best_epoch"] == result_b["best_epoch"]
    assert [h["val_accuracy"] for h in result_a["history"]] == [h["val_accuracy"] for h in result_b["history"]]
    for (name, a), (_, b) in zip(method_a.named_parameters(), method_b.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), name


@pytest.mark.parametrize("method_id", ["vip", "coop"])
def test_graphed_training_equals_eager_training(backbone, use_maker, method_id, capsys):
    eager = fitted(method_id, backbone)
    maker = use_maker(StaticBuffers())
    graphed = fitted(method_id, backbone)
    same_training(eager, graphed)
    assert maker.captures == 1  # one shape, captured once and replayed every step
    assert maker.replays >= graphed[0]["steps"]
    assert "CUDA graphs" not in capsys.readouterr().err


def test_batched_training_captures_one_graph_per_stack_size(backbone, use_maker):
    grid = [(1, 1), (1, 2), (3, 1)]  # the 3-shot run has more steps per epoch: the stack shrinks mid-epoch
    eager = [run_setup("vip", backbone, shots, seed) for shots, seed in grid]
    eager_results = fit_sgd_many(*map(list, zip(*eager)))
    maker = use_maker(StaticBuffers())
    graphed = [run_setup("vip", backbone, shots, seed) for shots, seed in grid]
    graphed_results = fit_sgd_many(*map(list, zip(*graphed)))
    for a, b, run_a, run_b in zip(eager_results, graphed_results, eager, graphed):
        same_training((a, run_a[0]), (b, run_b[0]))
    assert maker.captures == 2  # three runs stacked, then the 3-shot run alone


def test_a_failed_capture_leaves_training_eager_with_one_warning(backbone, use_maker, capsys):
    eager = fitted("vip", backbone)
    maker = use_maker(FailingCapture())
    after = fitted("vip", backbone)
    same_training(eager, after)
    err = capsys.readouterr().err
    assert err.count("CUDA graphs are off") == 1 and "operation not permitted" in err
    assert "off in this process" in err and vipcli.graphs._process_failure  # no other backbone tries either
    assert maker.captures == 1  # not retried at every step


def test_a_graph_that_computes_something_else_is_not_used(backbone, use_maker, capsys):
    eager = fitted("vip", backbone)
    use_maker(StaticBuffers(scale=1.5))
    after = fitted("vip", backbone)
    same_training(eager, after)
    assert "features differ from the eager ones" in capsys.readouterr().err


def test_graphs_are_only_made_on_cuda_and_can_be_refused(monkeypatch):
    assert vipcli.graphs.graph_maker(torch.device("cpu")) is None
    assert vipcli.graphs.graph_maker(torch.device("cuda")) is torch.cuda.make_graphed_callables
    monkeypatch.setenv("VIP_CUDA_GRAPHS", "0")
    assert vipcli.graphs.graph_maker(torch.device("cuda")) is None


def test_a_backbone_that_does_not_declare_cuda_graphs_runs_eagerly(use_maker, capsys):
    from vipcli.registry import load_backbone

    toy = load_backbone("toy", None, None)
    assert not toy.cuda_graphs
    maker = use_maker(StaticBuffers())
    method = build_method("vip", MethodSetup(toy, NAMES, SYMPTOMS), {})
    method.train()
    method.class_embeddings()[0].sum().backward()  # a training pass of the text side
    assert method.context.grad is not None and maker.captures == 0


def test_backbones_check_says_whether_graphs_are_declared_and_where_they_are_checked(cli, tiny_clip):
    code, out, err = cli("backbones", "check", "clip", "--arch", str(tiny_clip), "--pretrained", "none", "--json")
    rows = {row["check"]: row for row in json.loads(out)["checks"]}
    assert code == 0, err
    assert rows["CUDA graphs"]["ok"] is True and "only on a CUDA device" in rows["CUDA graphs"]["detail"]
    code, out, err = cli("backbones", "check", "toy", "--json")
    assert {row["check"]: row for row in json.loads(out)["checks"]}["CUDA graphs"]["detail"].startswith("not declared")


def test_the_graph_check_captures_compares_and_names_a_wrong_graph(backbone):
    from vipcli.backbone_contract import check_cuda_graphs

    maker = StaticBuffers()
    row = check_cuda_graphs(backbone, maker)
    assert row.ok is True and "equal the eager" in row.detail and maker.captures == 1
    row = check_cuda_graphs(backbone, StaticBuffers(scale=1.5))
    assert row.ok is False and "features differ" in row.detail and "cuda_graphs = False" in row.detail
    row = check_cuda_graphs(backbone, FailingCapture())
    assert row.ok is False and "operation not permitted" in row.detail


class ReadsFromTheDevice:
    """A backbone whose text tower fails its first (sync-checked) eager pass, as a host read does on CUDA."""

    cuda_graphs = True
    id = "host-reader"

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def encode_text_embeds(self, embeds, ids):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("called a synchronizing CUDA operation")
        return self.inner.encode_text_embeds(embeds, ids)


def test_a_tower_that_reads_from_the_device_is_never_captured(backbone, capsys):
    reader = ReadsFromTheDevice(backbone)
    maker = StaticBuffers()
    tower = vipcli.graphs.GraphedTextTower(reader, maker)
    ids = backbone.tokenize(["a round spot."] * 2)[:, :6]
    embeds = backbone.embed_tokens(ids).detach().requires_grad_(True)
    features = tower(embeds, ids)
    assert maker.captures == 0 and tower.failed and "reads from the device" in tower.failed
    assert torch.equal(features, backbone.encode_text_embeds(embeds, ids))
    assert vipcli.graphs._process_failure is None  # only this backbone is affected
    assert "CUDA graphs are off for backbone 'host-reader'" in capsys.readouterr().err


def tower_inputs(backbone, text="a round spot."):
    ids = backbone.tokenize([text] * 2)[:, :6]  # [2, 6]
    return backbone.embed_tokens(ids).detach().requires_grad_(True), ids  # [2, 6, W]


def test_a_replay_does_not_overwrite_an_earlier_result(backbone):
    tower = vipcli.graphs.GraphedTextTower(backbone, StaticBuffers())
    embeds, ids = tower_inputs(backbone)
    first = tower(embeds, ids)
    kept = first.detach().clone()
    first.sum().backward()
    tower(embeds * 2, ids)  # the same graph, replayed on other values
    assert torch.equal(first, kept)


def test_two_calls_before_one_backward_give_the_eager_gradients(backbone):
    maker = StaticBuffers()
    tower = vipcli.graphs.GraphedTextTower(backbone, maker)
    embeds, ids = tower_inputs(backbone)
    a, b = embeds.detach().clone().requires_grad_(True), (embeds.detach() * 2).requires_grad_(True)
    (tower(a, ids) * 3 + tower(b, ids)).sum().backward()  # a loss that encodes prompts twice
    a_eager, b_eager = embeds.detach().clone().requires_grad_(True), (embeds.detach() * 2).requires_grad_(True)
    (backbone.encode_text_embeds(a_eager, ids) * 3 + backbone.encode_text_embeds(b_eager, ids)).sum().backward()
    assert torch.allclose(a.grad, a_eager.grad, atol=1e-6) and torch.allclose(b.grad, b_eager.grad, atol=1e-6)
    replays = maker.replays
    tower(a, ids).sum().backward()  # after the backward, the graph is free again
    assert maker.replays == replays + 1


def test_runs_over_the_same_prompts_share_one_graph(backbone):
    maker = StaticBuffers()
    tower = vipcli.graphs.GraphedTextTower(backbone, maker)
    embeds, ids = tower_inputs(backbone)
    tower(embeds, ids).sum().backward()
    tower(embeds, ids.clone()).sum().backward()  # another run's bank: same prompts, another tensor
    assert maker.captures == 1
    tower(embeds, tower_inputs(backbone, "a dark spot.")[1]).sum().backward()  # other prompts
    assert maker.captures == 2


def test_graphs_are_bounded(backbone):
    tower = vipcli.graphs.GraphedTextTower(backbone, StaticBuffers())
    embeds, ids = tower_inputs(backbone)
    for n in range(vipcli.graphs.MAX_GRAPHS + 3):  # as many different prompt sets as a long benchmark
        other = ids.clone()
        other[:, 1] = 100 + n
        tower(embeds, other).sum().backward()
        assert len(tower.graphs) <= vipcli.graphs.MAX_GRAPHS
    assert len(tower.graphs) == vipcli.graphs.MAX_GRAPHS


def test_a_tower_does_not_keep_its_backbone_alive(tiny_clip):
    import gc
    import weakref

    from vipcli.registry import load_backbone

    loaded = load_backbone("clip", str(tiny_clip), "none", warn_random=False)
    vipcli.graphs.GraphedTextTower(loaded, StaticBuffers())
    vipcli.graphs._towers[loaded] = vipcli.graphs.GraphedTextTower(loaded, StaticBuffers())
    alive = weakref.ref(loaded)
    del loaded
    gc.collect()
    assert alive() is None


def test_graph_status_says_what_training_did(backbone, use_maker):
    from vipcli.graphs import graph_status

    assert graph_status(backbone) == "not used (not on CUDA)"
    use_maker(StaticBuffers())
    fitted("vip", backbone)
    assert graph_status(backbone) == "used (1 graph(s) kept)"
    fitted("vip", backbone, seed=2)  # another run over the same prompts replays the same graph
    assert graph_status(backbone) == "used (1 graph(s) kept)"
    use_maker(FailingCapture())
    fitted("vip", backbone)
    assert graph_status(backbone).startswith("off: capturing the text tower failed")


def test_the_reference_mode_trains_without_graphs_and_says_so(backbone, use_maker):
    from vipcli.backbone import using_plain_text_tower
    from vipcli.graphs import graph_status

    eager = fitted("vip", backbone)
    maker = use_maker(StaticBuffers())
    with using_plain_text_tower(backbone):
        plain = fitted("vip", backbone)  # the authors' way: the library's own tower, eagerly
        assert graph_status(backbone) == "off (the reference mode runs the plain text tower eagerly)"
    same_training(eager, plain)
    assert maker.captures == 0 and backbone not in vipcli.graphs._towers


def test_a_run_records_what_it_did_about_cuda_graphs(cli, isic_small, tiny_clip, tmp_path):
    from conftest import tiny_train_args

    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    assert code == 0, err
    timings = json.loads((tmp_path / "run" / "metrics.json").read_text())["timings"]
    assert timings["cuda_graphs"] == "not used (not on CUDA)"
