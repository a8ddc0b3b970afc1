"""Cross-checks against the anchor libraries (captum, pytorch-grad-cam) on the embedded model.

Equal to float tolerance where the definitions coincide; where they differ, the test shows
the difference (and the docstrings state it).
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import close_to, relu_twin

from convscope.attribution import attribute
from convscope.layers import find_layer

captum_attr = pytest.importorskip("captum.attr")
SIZE = 64
TARGETS = [285, 967]


@pytest.fixture(scope="module")
def x(small_batch):
    return F.interpolate(small_batch, size=SIZE, mode="bilinear", antialias=True).clamp(0, 1)


@pytest.fixture(scope="module")
def reference_model(model):
    """A private copy for the anchors (pytorch-grad-cam calls eval() and accumulates parameter grads)."""
    return copy.deepcopy(model).eval()


@pytest.fixture(scope="module")
def relu_model(model):
    """The embedded model with every ReLU6 replaced by nn.ReLU(inplace=True): what captum's rules cover."""
    return relu_twin(model)


def test_saliency_and_input_x_gradient_match_captum(model, reference_model, x):
    theirs = captum_attr.Saliency(reference_model).attribute(x.clone().requires_grad_(), target=TARGETS, abs=True)
    assert close_to(attribute(model, x, TARGETS, method="saliency", channels=None), theirs)
    # Simonyan's map is the max over channels of captum's per-channel |gradient|
    assert close_to(attribute(model, x, TARGETS, method="saliency"), theirs.amax(dim=1, keepdim=True))
    theirs = captum_attr.InputXGradient(reference_model).attribute(x.clone().requires_grad_(), target=TARGETS)
    assert close_to(attribute(model, x, TARGETS, method="input_x_gradient"), theirs)


@pytest.mark.parametrize("method, anchor", [("guided_backprop", "GuidedBackprop"), ("deconvnet", "Deconvolution")])
def test_rectifier_methods_match_captum_on_relu_networks(relu_model, x, method, anchor):
    theirs = getattr(captum_attr, anchor)(relu_model).attribute(x.clone().requires_grad_(), target=TARGETS)
    assert close_to(attribute(relu_model, x, TARGETS, method=method), theirs)


@pytest.mark.parametrize("method, anchor", [("guided_backprop", "GuidedBackprop"), ("deconvnet", "Deconvolution")])
def test_captum_ignores_relu6_convscope_does_not(model, reference_model, x, method, anchor):
    """On the embedded ReLU6 model captum's rules change nothing (its result is the plain gradient)."""
    theirs = getattr(captum_attr, anchor)(reference_model).attribute(x.clone().requires_grad_(), target=TARGETS)
    plain = attribute(model, x, TARGETS, method="saliency", signed=True, channels=None)
    ours = attribute(model, x, TARGETS, method=method)
    assert close_to(plain, theirs)
    assert not close_to(ours, theirs, rtol=0.1)


def test_integrated_gradients_matches_captum(model, reference_model, x):
    ig = captum_attr.IntegratedGradients(reference_model)
    theirs, delta = ig.attribute(x, target=TARGETS, n_steps=8, method="gausslegendre", return_convergence_delta=True)
    ours, gap = attribute(model, x, TARGETS, method="integrated_gradients", steps=8, return_gap=True)
    assert close_to(ours, theirs, rtol=1e-3)
    assert torch.allclose(gap, delta.float(), atol=1e-3 * delta.abs().max().item() + 1e-4)
    # captum's trapezoid weights are 1/n (halved ends), summing to (n - 1)/n; convscope's are 1/(n - 1), summing to 1
    theirs = ig.attribute(x, target=TARGETS, n_steps=8, method="riemann_trapezoid")
    ours = attribute(model, x, TARGETS, method="integrated_gradients", steps=8, rule="riemann_trapezoid")
    # (looser: the black end point alpha = 0 sits on rectifier kinks, where batch-dependent rounding flips gates)
    assert close_to(ours, theirs * 8 / 7, rtol=1e-2)
    assert abs((ours.abs().sum() / theirs.abs().sum()).item() - 8 / 7) < 1e-2


def test_occlusion_matches_captum_with_grey_baseline(model, reference_model, x):
    theirs = captum_attr.Occlusion(reference_model).attribute(
        x,
        target=TARGETS,
        sliding_window_shapes=(3, 16, 16),
        strides=(3, 16, 16),
        baselines=0.5,
        perturbations_per_eval=16,
    )
    ours = attribute(model, x, TARGETS, method="occlusion", window=16, stride=16, fill=0.5)
    assert close_to(ours.expand_as(theirs), theirs, rtol=1e-3)


def test_gradcam_and_guided_gradcam_match_captum(model, reference_model, relu_model, x):
    layer = find_layer(reference_model, "bn2")
    raw = captum_attr.LayerGradCam(reference_model, layer).attribute(x, target=TARGETS, relu_attributions=True)
    theirs = captum_attr.LayerAttribution.interpolate(raw, (SIZE, SIZE), interpolate_mode="bilinear")
    assert close_to(attribute(model, x, TARGETS, method="gradcam"), theirs)
    # captum's LayerGradCam has no ReLU by default
    raw = captum_attr.LayerGradCam(reference_model, layer).attribute(x, target=TARGETS)
    assert close_to(
        attribute(model, x, TARGETS, method="gradcam", relu=False, interpolation="nearest"),
        F.interpolate(raw, size=(SIZE, SIZE), mode="nearest"),
    )
    # guided Grad-CAM: captum upsamples nearest and only covers nn.ReLU
    theirs = captum_attr.GuidedGradCam(relu_model, find_layer(relu_model, "bn2")).attribute(x, target=TARGETS)
    assert close_to(attribute(relu_model, x, TARGETS, method="guided_gradcam", interpolation="nearest"), theirs)


@pytest.mark.parametrize("method, anchor", [("gradcam", "GradCAM"), ("gradcam_pp", "GradCAMPlusPlus")])
def test_cam_methods_match_pytorch_grad_cam(model, reference_model, small_batch, method, anchor):
    """pytorch-grad-cam min-max scales relu(cam) at layer resolution, then resizes bilinearly (cv2);
    convscope returns the raw map: equal after the same scaling, up to cv2 vs torch resampling."""
    grad_cam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with getattr(grad_cam, anchor)(model=reference_model, target_layers=[find_layer(reference_model, "bn2")]) as engine:
        theirs = engine(input_tensor=small_batch, targets=[ClassifierOutputTarget(t) for t in TARGETS])
    ours = attribute(model, small_batch, TARGETS, method=method)[:, 0]
    low, high = ours.flatten(1).amin(1)[:, None, None], ours.flatten(1).amax(1)[:, None, None]
    scaled = ((ours - low) / (high - low + 1e-7)).numpy()
    assert np.abs(scaled - theirs).max() < 0.05
    assert np.corrcoef(scaled.ravel(), theirs.ravel())[0, 1] > 0.999
