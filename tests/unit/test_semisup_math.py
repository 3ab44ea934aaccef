import math

import numpy as np
import pytest
import torch
from torch import nn

from rayssl.config import OptimConfig
from rayssl.data.labels import LeakageError, check_no_leakage, draw_labels
from rayssl.methods.fixmatch import SelfAdaptiveThreshold, fixmatch_loss
from rayssl.methods.inversion import (
    entropy,
    inversion_reconstruction,
    layerwise_reconstruction,
    multiscale_loss,
    reconstruction_loss,
    sigmoid_rampup,
)
from rayssl.train.steps import build_optimizer, clip_gradients, warmup_cosine


def two_layer_net() -> tuple[nn.Module, nn.Module]:
    """Linear(2, 2) + ReLU, then Linear(2, 1), with weights small enough to invert by hand."""
    first, second = nn.Linear(2, 2), nn.Linear(2, 1)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 2.0], [-2.0, 1.0]]))
        first.bias.zero_()
        second.weight.copy_(torch.tensor([[1.0, 1.0]]))
        second.bias.fill_(-1.0)
    return nn.Sequential(first, nn.ReLU()), second


def test_global_inversion_loss_by_hand():
    # x = (1, 1): layer 1 gives (3, -1) -> ReLU (3, 0); output 3 + 0 - 1 = 2.
    # A[x] = W2 diag(1, 0) W1 = (1, 2); x_hat = A^T * 2 = (2, 4); ||x - x_hat||^2 = 1 + 9 = 10.
    layer1, layer2 = two_layer_net()
    x = torch.tensor([[1.0, 1.0]])
    out, x_hat = inversion_reconstruction(nn.Sequential(layer1, layer2), x)
    assert out.item() == pytest.approx(2.0)
    assert x_hat[0].tolist() == pytest.approx([2.0, 4.0])
    assert reconstruction_loss(x, x_hat).item() == pytest.approx(10.0)


def test_multiscale_inversion_loss_by_hand():
    # Layer 1: A1 = diag(1, 0) W1 = [[1, 2], [0, 0]], h1 = (3, 0): x_hat = A1^T h1 = (3, 6);
    #   ||(1, 1) - (3, 6)||^2 = 4 + 25 = 29, over dim 2 -> 14.5.
    # Layer 2: A2 = W2 = (1, 1), output 2: h1_hat = (2, 2); ||(3, 0) - (2, 2)||^2 = 1 + 4 = 5, over dim 2 -> 2.5.
    layer1, layer2 = two_layer_net()
    out, pairs = layerwise_reconstruction([layer1, layer2], torch.tensor([[1.0, 1.0]]))
    assert out.item() == pytest.approx(2.0)
    assert [h_hat[0].tolist() for _, h_hat in pairs] == [pytest.approx([3.0, 6.0]), pytest.approx([2.0, 2.0])]
    assert multiscale_loss(pairs).item() == pytest.approx(17.0)


def test_inversion_losses_reach_every_layer():
    layer1, layer2 = two_layer_net()
    x = torch.tensor([[1.0, 1.0], [0.5, 2.0]])
    _, pairs = layerwise_reconstruction([layer1, layer2], x)
    multiscale_loss(pairs).backward()
    assert layer1[0].weight.grad.abs().sum() > 0 and layer2.weight.grad.abs().sum() > 0


def test_inversion_equals_jacobian_transpose_times_output():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 4)).double()
    x = torch.randn(3, 1, 3, 4, dtype=torch.double)
    out, x_hat = inversion_reconstruction(net, x)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(net, x[i : i + 1]).reshape(4, 12)  # A[x_i]
        assert torch.allclose(x_hat[i].flatten(), jac.T @ out[i].detach(), atol=1e-10)


def test_entropy_by_hand():
    # p = (1/4, 3/4): H = 1/4 ln 4 + 3/4 ln(4/3) = 0.562335
    assert entropy(torch.tensor([[0.0, math.log(3.0)]])).item() == pytest.approx(0.562335, abs=1e-6)
    assert entropy(torch.tensor([[5.0, 5.0]])).item() == pytest.approx(math.log(2.0))


def test_fixmatch_loss_by_hand():
    # Weak confidences 0.9 and 0.99 against a 0.95 threshold: only row 2 counts, with pseudo-label 0;
    # its strong logits (0, 0) give CE ln 2; the mean over both rows is ln 2 / 2.
    weak = torch.tensor([[math.log(9.0), 0.0], [math.log(99.0), 0.0]])
    strong = torch.tensor([[3.0, -3.0], [0.0, 0.0]], requires_grad=True)
    loss, confident = fixmatch_loss(weak, strong, threshold=0.95)
    assert loss.item() == pytest.approx(math.log(2.0) / 2)
    assert confident.item() == 1
    loss.backward()
    assert strong.grad[0].abs().sum() == 0 and strong.grad[1].abs().sum() > 0


def test_warmup_cosine_schedule():
    f = warmup_cosine(warmup=10, total=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0)


def test_gradients_are_clipped_by_total_norm_then_elementwise():
    net = nn.Linear(1, 2, bias=False)
    net.weight.grad = torch.tensor([[3.0], [4.0]])  # norm 5
    clip_gradients(net, OptimConfig(clip_grad_norm=2.5, clip_grad_value=1.8))
    # scaled to norm 2.5: (1.5, 2.0); then clipped to +-1.8: (1.5, 1.8). The other order gives (1.77, 1.77).
    assert net.weight.grad.flatten().tolist() == pytest.approx([1.5, 1.8], abs=1e-5)
    net.weight.grad = torch.tensor([[3.0], [-4.0]])
    clip_gradients(net, OptimConfig())  # 0: off
    assert net.weight.grad.flatten().tolist() == [3.0, -4.0]
    assert build_optimizer(OptimConfig(eps=1e-4), net.parameters()).param_groups[0]["eps"] == 1e-4


def test_sigmoid_rampup_by_hand():
    # exp(-5 (1 - t)^2): t = 0 -> e^-5, t = 1/2 -> e^-1.25, t >= 1 -> 1; no ramp -> 1
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5.0))
    assert sigmoid_rampup(50, 100) == pytest.approx(0.2865048)
    assert sigmoid_rampup(100, 100) == 1.0 and sigmoid_rampup(5000, 100) == 1.0
    assert sigmoid_rampup(0, 0) == 1.0


def test_subsets_are_balanced_seeded_disjoint_and_nested():
    labels = np.repeat(np.arange(4), 30)
    a = draw_labels(labels, per_class=5, val_per_class=3, val_fraction=0.2, seed=7)
    assert np.array_equal(a.labelled, draw_labels(labels, 5, 3, 0.2, seed=7).labelled)
    assert np.bincount(labels[a.labelled]).tolist() == [5] * 4
    assert np.bincount(labels[a.validation]).tolist() == [3] * 4
    assert not set(a.labelled) & set(a.validation) and len(a.test) == 0 and a.shortfall == {}
    bigger = draw_labels(labels, per_class=10, val_per_class=3, val_fraction=0.2, seed=7)
    assert set(a.labelled) <= set(bigger.labelled) and np.array_equal(a.validation, bigger.validation)
    everything = draw_labels(labels, per_class="all", val_per_class=3, val_fraction=0.2, seed=7)
    assert set(bigger.labelled) <= set(everything.labelled) and len(everything.labelled) == 4 * 27
    assert not np.array_equal(a.labelled, draw_labels(labels, 5, 3, 0.2, seed=8).labelled)
    # a budget larger than a class's labels takes what it has, and says so
    short = draw_labels(labels, per_class=28, val_per_class=3, val_fraction=0.2, seed=0)
    assert short.shortfall == {0: 27, 1: 27, 2: 27, 3: 27} and len(short.labelled) == 4 * 27


def test_fully_labelled_draws_are_the_draws_of_every_committed_result():
    # Before label tables, a draw was: per class in order, one permutation; validation first, then the budget.
    labels = np.random.default_rng(3).integers(0, 10, 6000)
    rng = np.random.default_rng(11)
    expected_val, expected_lab = [], []
    for c in range(10):
        members = rng.permutation(np.flatnonzero(labels == c))
        expected_val.append(members[:10])
        expected_lab.append(members[10:15])
    split = draw_labels(labels, per_class=5, val_per_class=10, val_fraction=0.2, seed=11)
    assert np.array_equal(split.validation, np.sort(np.concatenate(expected_val)))
    assert np.array_equal(split.labelled, np.sort(np.concatenate(expected_lab)))


def test_leakage_check_fires():
    check_no_leakage({"labelled": {"a", "b"}, "validation": {"c"}, "test": {"d"}})
    with pytest.raises(LeakageError, match="1 sample ids are in both 'labelled' and 'test'"):
        check_no_leakage({"labelled": {"a", "b"}, "validation": {"c"}, "test": {"b"}})


def test_inversion_loss_trains_a_vit_encoder():
    # Double backward through attention: the fused CPU/GPU attention kernels have no second
    # derivative, so the reconstruction must run attention on the differentiable math path.
    from rayssl.config import ViTConfig
    from rayssl.models.classifier import Classifier
    from rayssl.models.vit import ViTEncoder, ViTFeatures

    torch.manual_seed(0)
    model = Classifier(ViTFeatures(ViTEncoder(ViTConfig(patch_size=4, width=32, depth=2, heads=4), 1, 16)), 32, 3).train()
    x = torch.randn(4, 1, 16, 16)
    logits, x_hat = inversion_reconstruction(model, x)
    assert x_hat.shape == x.shape
    (nn.functional.cross_entropy(logits[:2], torch.tensor([0, 1])) + 0.1 * reconstruction_loss(x, x_hat)).backward()
    grad = model.backbone.encoder.blocks[0].self_attention.in_proj_weight.grad
    assert grad is not None and grad.abs().sum() > 0


def _data(images: np.ndarray):
    """FinetuneData of 6 labelled images (classes 0, 1 alternating), the first two as validation."""
    from rayssl.train.steps import FinetuneData

    return FinetuneData(
        images, np.arange(6) % 2, np.arange(6), images[:2], np.array([0, 1]), np.array([100, 101]), np.zeros((0, 2), np.float32)
    )


def test_finetune_step_ramps_the_entropy_weight():
    """The step's loss is CE + beta * sigmoid_rampup(step) * entropy(unlabelled): e^-5 of beta at step 0, beta after the ramp."""
    from rayssl.config import FinetuneConfig, from_dict
    from rayssl.data.transforms import normalise
    from rayssl.train.steps import FinetuneStep

    cfg = from_dict(
        FinetuneConfig,
        {
            "data": {"image_size": 8, "channels": 1, "batch_size": 4},
            "model": {"name": "small_cnn", "width": 4},
            "semisup": {"labelled_batch_size": 4},
            "inversion": {"beta": 2.0, "beta_rampup_steps": 10},
            "schedule": {"steps": 20, "warmup_steps": 0},
        },
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    step = FinetuneStep(cfg, _data(images))
    unlabelled = normalise(torch.from_numpy(images.transpose(0, 3, 1, 2)))[:4]
    batch = {"index": torch.arange(4), "image": unlabelled, "labelled_pick": torch.arange(4)}
    for t, ramp in ((0, math.exp(-5.0)), (10, 1.0)):
        step.scheduler.last_epoch = t
        loss, stats = step.step(step.model, batch, 0, gather=None)
        expected = stats["ce"] / 4 + 2.0 * ramp * entropy(step.model(unlabelled))
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_finetune_stream_runs_on_across_rounds_and_close_closes_the_open_pass():
    """The unlabelled stream continues mid-pass into the next round, and close() ends the pass in progress."""
    from rayssl.config import FinetuneConfig, from_dict
    from rayssl.train.steps import FinetuneStep

    cfg = from_dict(
        FinetuneConfig,
        {
            "data": {"image_size": 8, "channels": 1, "batch_size": 2},
            "model": {"name": "small_cnn", "width": 4},
            "semisup": {"labelled_batch_size": 2},
            "inversion": {"beta": 0.5},
            "schedule": {"steps": 6, "eval_every": 3, "warmup_steps": 0},
        },
    )
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    step = FinetuneStep(cfg, _data(images))
    passes, closed = [], []

    def epoch(batch_size, device):  # one pass = 4 batches, numbered by pass
        number = len(passes)
        passes.append(number)
        try:
            for i in range(4):
                yield {"index": torch.full((batch_size,), 10 * number + i), "image": torch.zeros(batch_size, 1, 8, 8)}
        finally:
            closed.append(number)

    seen = [int(b["index"][0]) for r in range(2) for b in step.round_batches(epoch, r, torch.device("cpu"))]
    assert seen == [0, 1, 2, 3, 10, 11]  # round 1 finishes pass 0, then starts pass 1
    assert closed == [0]
    held = step._stream  # a live reference, as a loop's frames may hold: only close() can end the pass now
    step.close()
    assert closed == [0, 1]  # the pass left open at step 6 is closed, not left to the garbage collector
    assert held.gi_frame is None and step._stream is None  # the stream itself has ended and is let go


def test_labelled_images_take_semisup_labelled_augment_instead_of_data_augment():
    """semisup.labelled_augment replaces data.augment for the labelled batch: with data.augment off the
    labelled images arrive as they are; with a labelled view of shear and elastic distortion they change."""
    from rayssl.config import FinetuneConfig, from_dict
    from rayssl.data.transforms import normalise
    from rayssl.train.steps import FinetuneStep

    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    plain = normalise(torch.from_numpy(images.transpose(0, 3, 1, 2)))
    pick = {"labelled_pick": torch.arange(6), "index": torch.arange(6)}
    labelled_batches = {}
    for name, labelled_augment in (("data.augment", None), ("own view", {"shear_deg": 20.0, "elastic_alpha": 2.0})):
        cfg = from_dict(
            FinetuneConfig,
            {
                "data": {"image_size": 8, "channels": 1, "batch_size": 6},
                "model": {"name": "small_cnn", "width": 4},
                "semisup": {"labelled_batch_size": 6, "labelled_augment": labelled_augment},
            },
        )
        step = FinetuneStep(cfg, _data(images))
        torch.manual_seed(0)
        labelled_batches[name] = step._inputs(step.model, pick).labelled
    assert torch.allclose(labelled_batches["data.augment"], plain)  # data.augment is off: no view at all
    assert labelled_batches["own view"].shape == plain.shape
    assert (labelled_batches["own view"] - plain).abs().mean() > 0.05  # every sample sheared and distorted


def test_fixmatch_schedule_and_nesterov():
    f = warmup_cosine(warmup=0, total=100, decay="cosine_7_16")  # cos(7 pi p / 16)
    assert f(0) == pytest.approx(1.0) and f(50) == pytest.approx(math.cos(7 * math.pi / 32)) and f(100) == pytest.approx(0.19509, abs=1e-5)
    net = nn.Linear(1, 1)
    assert build_optimizer(OptimConfig(name="sgd", nesterov=True), net.parameters()).param_groups[0]["nesterov"] is True


def test_self_adaptive_thresholds_by_hand():
    adaptive = SelfAdaptiveThreshold(num_classes=2, momentum=0.5)  # starts at tau = 1/2, p = (1/2, 1/2)
    weak = torch.tensor([[0.8, 0.2], [0.45, 0.55]]).log()
    adaptive.update(weak)
    # tau = 0.5 * 0.5 + 0.5 * mean(0.8, 0.55) = 0.5875; p = 0.5 * 0.5 + 0.5 * (0.625, 0.375) = (0.5625, 0.4375)
    assert adaptive.thresholds().tolist() == pytest.approx([0.5875, 0.5875 * 0.4375 / 0.5625])
    strong = torch.zeros(2, 2)
    # class 1's threshold (0.457) lets the second row (0.55) through, where a fixed 0.5875 would not
    assert fixmatch_loss(weak, strong, adaptive.thresholds())[1].item() == 2
    assert fixmatch_loss(weak, strong, 0.5875)[1].item() == 1
    restored = SelfAdaptiveThreshold(num_classes=2, momentum=0.5)
    restored.load_state_dict(adaptive.state_dict())
    assert restored.thresholds().tolist() == adaptive.thresholds().tolist()


def test_self_adaptive_thresholds_average_over_every_workers_batch():
    # this worker's rows (0.8, 0.2); another worker's (0.45, 0.55) and (0.3, 0.7), added by the reduction
    other = torch.tensor([0.55 + 0.7, 0.45 + 0.3, 0.55 + 0.7, 2.0])
    adaptive = SelfAdaptiveThreshold(num_classes=2, momentum=0.5, reduce=lambda local: local + other)
    adaptive.update(torch.tensor([[0.8, 0.2]]).log())
    # over the 3 rows: mean top confidence (0.8 + 0.55 + 0.7) / 3; mean class probabilities (1.55, 1.45) / 3
    assert adaptive.confidence.item() == pytest.approx(0.25 + 0.5 * 2.05 / 3)
    assert adaptive.class_probability.tolist() == pytest.approx([0.25 + 0.5 * 1.55 / 3, 0.25 + 0.5 * 1.45 / 3])
    # a worker with no unlabelled rows this step still takes part, and moves with the others
    empty = SelfAdaptiveThreshold(num_classes=2, momentum=0.5, reduce=lambda local: local + other)
    empty.update(torch.zeros(0, 2))
    assert empty.confidence.item() == pytest.approx(0.25 + 0.5 * 1.25 / 2)


def test_the_adaptive_thresholds_move_with_each_step_and_survive_a_checkpoint():
    from rayssl.config import FinetuneConfig, from_dict
    from rayssl.data.transforms import normalise
    from rayssl.train.steps import FinetuneStep

    cfg = from_dict(
        FinetuneConfig,
        {
            "data": {"image_size": 8, "channels": 1, "batch_size": 4},
            "model": {"name": "small_cnn", "width": 4},
            "semisup": {"labelled_batch_size": 4, "num_classes": 2},
            "fixmatch": {"weight": 1.0, "threshold": "self_adaptive", "threshold_momentum": 0.9},
            "schedule": {"steps": 20, "warmup_steps": 0},
        },
    )
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    step = FinetuneStep(cfg, _data(images))
    unlabelled = normalise(torch.from_numpy(images.transpose(0, 3, 1, 2)))[:4]
    batch = {"index": torch.arange(4), "image": unlabelled, "image_view2": unlabelled, "labelled_pick": torch.arange(4)}
    step.step(step.model, batch, 0, gather=None)
    fixmatch = next(o for o in step.objectives if o.section == "fixmatch")
    moved = fixmatch.adaptive.thresholds()
    assert not torch.allclose(moved, torch.full((2,), 0.5))  # one update moved them off 1/K
    resumed = FinetuneStep(cfg, _data(images))
    resumed.load_state_dict(step.state_dict())
    assert next(o for o in resumed.objectives if o.section == "fixmatch").adaptive.thresholds().tolist() == moved.tolist()
