"""LRP against zennit 0.5 (VGG-style and torchvision ResNet-18 with BatchNorm), conservation, and hygiene."""

import pytest
import torch
import torchvision
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from convscope.attribution import attribute
from convscope.attribution.lrp import COMPOSITES, lrp
from convscope.errors import ConvscopeError
from convscope.hooks import hook_count

zennit = pytest.importorskip("zennit")


def _vgg_style(bias: bool = True, batchnorm: bool = True) -> nn.Sequential:
    def block(cin, cout):
        return (
            [nn.Conv2d(cin, cout, 3, padding=1, bias=bias)]
            + ([nn.BatchNorm2d(cout)] if batchnorm else [])
            + [nn.ReLU()]
        )

    return nn.Sequential(
        *block(3, 8),
        *block(8, 8),
        nn.MaxPool2d(2),
        *block(8, 16),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(256, 32, bias=bias),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(32, 10, bias=bias),
    )


def _random_batchnorm(net: nn.Module) -> nn.Module:
    generator = torch.Generator().manual_seed(1)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.rand(size, generator=generator) * 0.4 - 0.2)
            module.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(size, generator=generator) * 0.4 - 0.2)
            # zennit's merge turns the BatchNorm into x / sqrt(1 + eps), not the identity (a 5e-6 change of the
            # forward per layer); with eps = 0 both sides explain exactly the same function
            module.eps = 0.0
    return net.eval().double()


def _zennit_composite(rule: str, canonizer):
    from zennit.composites import EpsilonAlpha2Beta1Flat, EpsilonGammaBox, LayerMapComposite, layer_map_base
    from zennit.rules import AlphaBeta, Epsilon, Gamma
    from zennit.types import Convolution

    if rule == "epsilon_gamma_box":
        return EpsilonGammaBox(low=0.0, high=1.0, canonizers=[canonizer()])
    if rule == "epsilon_alpha2_beta1_flat":
        return EpsilonAlpha2Beta1Flat(canonizers=[canonizer()])
    single = {
        "epsilon": Epsilon(1e-6),
        "gamma": Gamma(0.25),
        "alpha1beta0": AlphaBeta(1, 0),
        "alpha2beta1": AlphaBeta(2, 1),
    }[rule]
    return LayerMapComposite(layer_map_base() + [(Convolution, single), (nn.Linear, single)], canonizers=[canonizer()])


@pytest.mark.parametrize(
    "network, rule",
    [("vgg", rule) for rule in COMPOSITES]
    + [("resnet", rule) for rule in ("epsilon_gamma_box", "epsilon_alpha2_beta1_flat", "epsilon")],
)
def test_lrp_equals_zennit(network, rule):
    from zennit.attribution import Gradient
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    torch.manual_seed(0)
    if network == "vgg":
        net, canonizer = _random_batchnorm(_vgg_style()), VGGCanonizer
    else:
        net, canonizer = _random_batchnorm(torchvision.models.resnet18(num_classes=10)), ResNetCanonizer
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    target = torch.tensor([3, 7])
    ours = lrp(net, x, target, rule=rule)
    with Gradient(net, _zennit_composite(rule, canonizer)) as attributor:
        _, theirs = attributor(
            x.clone().requires_grad_(True),
            lambda out: torch.zeros_like(out).scatter(1, target[:, None], out.gather(1, target[:, None])),
        )
    # float64 on both sides: the maps agree to ~1e-12 of their scale
    assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-9 * theirs.abs().max().item())
    assert hook_count(net) == 0


def test_lrp_box_through_a_normalisation_equals_zennit():
    """z^B with a box that differs per channel (the [0, 1] pixels through a mean/std normalisation):
    convscope folds it into one weight per layer, zennit takes the box as full tensors."""
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonGammaBox
    from zennit.torchvision import VGGCanonizer

    from convscope.models import ImageClassifier

    torch.manual_seed(0)
    net = _random_batchnorm(_vgg_style())
    model = ImageClassifier(net, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).double().eval()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    target = torch.tensor([3, 7])
    ours = lrp(model, x, target)
    normalized = model.normalize(x)
    low, high = model.normalize(torch.zeros_like(x)), model.normalize(torch.ones_like(x))
    with Gradient(net, EpsilonGammaBox(low=low, high=high, canonizers=[VGGCanonizer()])) as attributor:
        _, theirs = attributor(
            normalized.clone().requires_grad_(True),
            lambda out: torch.zeros_like(out).scatter(1, target[:, None], out.gather(1, target[:, None])),
        )
    assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-9 * theirs.abs().max().item())


@pytest.mark.parametrize("rule", ["gamma", "alpha2beta1", "alpha1beta0"])
def test_lrp_signed_inputs_equal_zennit(rule):
    """Signed inputs (zennit runs every weight on x+ and x-; convscope uses Q = |W| |x| once)."""
    from zennit.attribution import Gradient
    from zennit.torchvision import VGGCanonizer

    torch.manual_seed(0)
    net = _random_batchnorm(_vgg_style())
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    target = torch.tensor([3, 7])
    ours = lrp(net, x, target, rule=rule)
    with Gradient(net, _zennit_composite(rule, VGGCanonizer)) as attributor:
        _, theirs = attributor(
            x.clone().requires_grad_(True),
            lambda out: torch.zeros_like(out).scatter(1, target[:, None], out.gather(1, target[:, None])),
        )
    assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-9 * theirs.abs().max().item())


def test_lrp_conserves_the_logit_on_a_bias_free_relu_net():
    torch.manual_seed(0)
    net = _vgg_style(bias=False, batchnorm=False).eval().double()
    x = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    logits = net(x)
    relevance = lrp(net, x, [1, 2, 3], rule="epsilon", epsilon=1e-12, stabilizer=1e-12)
    assert torch.allclose(relevance.sum(dim=(1, 2, 3)), logits[torch.arange(3), torch.tensor([1, 2, 3])], rtol=1e-8)
    # alpha1beta0 on positive-input layers conserves too, up to relevance lost at the zero-sum units
    plus = lrp(net, x, 1, rule="alpha1beta0")
    assert plus.shape == x.shape and torch.isfinite(plus).all()


def test_lrp_on_the_embedded_model_folds_batchnorm_and_leaves_it_untouched(model, small_batch):
    from convscope.attribution.lrp import LRPRecord, _LRPMode, composite_rules

    before = [p.clone() for p in model.parameters()]
    heat = attribute(model, small_batch, [285, 967], method="lrp", channels="sum")
    assert heat.shape == (2, 1, 128, 128) and torch.isfinite(heat).all()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())) and hook_count(model) == 0
    record = LRPRecord([])
    x = model.normalize(small_batch[:1]).requires_grad_(True)
    with _LRPMode(composite_rules("epsilon_gamma_box"), record):
        model.network(x)
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert record.layers[0] == "conv:zbox" and record.layers[-1] == "linear:epsilon"
    assert len(record.layers) == convs + 1 and record.folded == convs  # every conv is followed by its BatchNorm


def test_lrp_bad_rule():
    with pytest.raises(ConvscopeError, match="unknown LRP"):
        lrp(_vgg_style(), torch.rand(1, 3, 16, 16), 0, rule="zplus_magic")


class _ConvCount(TorchDispatchMode):
    """How many convolutions and transposed convolutions (input gradients) run inside the block."""

    def __init__(self):
        super().__init__()
        self.forward = self.transposed = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.forward += func is torch.ops.aten.convolution.default
        self.transposed += func is torch.ops.aten.convolution_backward.default
        return func(*args, **(kwargs or {}))


def test_lrp_gamma_folds_one_weight_where_no_relevance_reaches_a_negative_output():
    """A gamma layer whose input is >= 0 and whose relevance is 0 at its negative outputs (it feeds a
    ReLU) takes the one weight W + gamma W+: its forward, |W| x and one transposed conv (3 where a
    forward+backward has 2); a layer feeding a residual sum keeps the two transposed convs (4)."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    with _ConvCount() as vgg:
        lrp(_random_batchnorm(_vgg_style()), x, [3, 7], rule="gamma")
    assert (vgg.forward, vgg.transposed) == (6, 3)  # 3 convs, every one conv-BN-ReLU
    with _ConvCount() as resnet:
        lrp(_random_batchnorm(torchvision.models.resnet18(num_classes=10)), x, [3, 7])
    # stem (z^B): forward, box term, one transposed conv of [W, V]; 8 conv1 (-> ReLU): 2 + 1;
    # 8 conv2 and 3 downsample convs (-> the residual sum): 2 + 2
    assert (resnet.forward, resnet.transposed) == (2 + 19 * 2, 1 + 8 + 11 * 2)
