"""Segmentation data, metrics (cross-checked with scikit-learn), networks and a tiny real training run."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix as sk_confusion, jaccard_score

from convscope.errors import ConvscopeError
from convscope.segmentation import (
    FCN,
    SCENE_CLASSES,
    SegmentationScores,
    UNet,
    build_segmenter,
    confusion_matrix,
    dice_loss,
    draw_masks,
    evaluate_segmenter,
    generate_scenes,
    load_voc_folder,
    predict_masks,
    segmentation_loss,
    train_segmenter,
    write_voc_folder,
)
from convscope.testing import assert_untouched, model_state


def test_scores_match_scikit_learn():
    generator = torch.Generator().manual_seed(0)
    truth = torch.randint(0, 4, (3, 10, 10), generator=generator)
    predicted = torch.where(
        torch.rand(3, 10, 10, generator=generator) < 0.7, truth, torch.randint(0, 4, (3, 10, 10), generator=generator)
    )
    truth[0, :2] = 255  # ignored pixels
    confusion = confusion_matrix(predicted, truth, 4)
    keep = (truth != 255).flatten().numpy()
    t, p = truth.flatten().numpy()[keep], predicted.flatten().numpy()[keep]
    np.testing.assert_array_equal(confusion.numpy(), sk_confusion(t, p, labels=range(4)))
    scores = SegmentationScores.from_confusion(confusion)
    np.testing.assert_allclose(scores.class_iou.numpy(), jaccard_score(t, p, average=None, labels=range(4)), rtol=1e-6)
    assert scores.pixel_accuracy == pytest.approx(accuracy_score(t, p))
    assert scores.mean_iou == pytest.approx(jaccard_score(t, p, average="macro", labels=range(4)))


def test_miou_leaves_out_classes_absent_from_truth_and_prediction():
    truth = torch.tensor([[0, 0, 1, 1]])
    predicted = torch.tensor([[0, 1, 1, 1]])
    scores = SegmentationScores.from_confusion(confusion_matrix(predicted, truth, 3))
    assert scores.class_iou[:2].tolist() == pytest.approx([1 / 2, 2 / 3])
    assert torch.isnan(scores.class_iou[2])
    assert scores.mean_iou == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert scores.pixel_accuracy == pytest.approx(3 / 4)


def test_dice_loss_by_hand():
    target = torch.tensor([[[0, 1]]])
    certain = torch.tensor([[[[50.0, -50.0]], [[-50.0, 50.0]]]])
    assert float(dice_loss(certain, target, smooth=0.0)) == pytest.approx(0.0, abs=1e-6)
    even = torch.zeros(1, 2, 1, 2)  # p = 0.5 everywhere: dice_c = 2 * 0.5 / (1 + 1) = 0.5
    assert float(dice_loss(even, target, smooth=0.0)) == pytest.approx(0.5)
    combined = segmentation_loss(even, target, "ce+dice")
    assert float(combined) == pytest.approx(float(np.log(2)) + 1 / 3, rel=1e-5)  # default smooth=1: (1 + 1) / (2 + 1)
    with pytest.raises(ConvscopeError):
        segmentation_loss(even, target, "focal")


def test_generated_scenes_are_exact_and_deterministic(tmp_path):
    data = generate_scenes(6, size=48, seed=3)
    again = generate_scenes(6, size=48, seed=3)
    assert torch.equal(data.images, again.images) and torch.equal(data.masks, again.masks)
    assert data.classes == SCENE_CLASSES and data.images.min() >= 0 and data.images.max() <= 1
    assert set(data.masks.unique().tolist()) <= {0, 1, 2, 3} and (data.masks > 0).any() and (data.masks == 0).any()
    # the VOC round trip keeps every mask pixel and the class names
    write_voc_folder(data, tmp_path / "voc", split="val")
    read = load_voc_folder(tmp_path / "voc", split="val")
    assert torch.equal(read.masks, data.masks) and read.classes == SCENE_CLASSES
    assert (read.images - data.images).abs().max() <= 1 / 255 + 1e-6
    with pytest.raises(ConvscopeError):
        load_voc_folder(tmp_path / "voc", split="train")
    # torchvision's VOCSegmentation root (the release tar unpacked): ROOT/VOCdevkit/VOC2012
    write_voc_folder(data, tmp_path / "tv" / "VOCdevkit" / "VOC2012", split="val")
    assert torch.equal(load_voc_folder(tmp_path / "tv", split="val").masks, data.masks)
    drawn = draw_masks(data.images[:2], data.masks[:2], len(SCENE_CLASSES))
    background = data.masks[:2] == 0
    assert torch.allclose(
        drawn.permute(0, 2, 3, 1)[background], data.images[:2].permute(0, 2, 3, 1)[background], atol=1 / 255
    )
    from helpers import png_dpi, svg_text

    from convscope.segmentation import prediction_figure

    # truth as the prediction: pixel accuracy 1, each class's share, and a colour legend of the painted classes
    prediction_figure(data.images[:1], data.masks[:1], SCENE_CLASSES, data.masks[:1], tmp_path / "m.svg", "scenes")
    text = svg_text(tmp_path / "m.svg")
    share = (data.masks[0] == 0).float().mean()
    assert text.startswith("image truth prediction (pixel accuracy 1.00): ") and "scenes" in text
    assert f"background {float(share):.0%}" in text and text.endswith("cat coffee astronaut")
    prediction_figure(data.images[:2], data.masks[:2], SCENE_CLASSES, path=tmp_path / "m.png", names=["a", "b"])
    assert png_dpi(tmp_path / "m.png") == (300, 300)


def test_unet_shapes_and_skips():
    net = UNet(4, width=4, depth=2)
    assert net(torch.rand(2, 3, 30, 22)).shape == (2, 4, 30, 22)
    assert net.merge[0][0].in_channels == 2 * net.up[0].out_channels  # copied skip features concatenated


def test_segnet_decodes_with_the_encoder_pooling_indices():
    from convscope.segmentation import SegNet, generate_scenes, train_segmenter

    net = build_segmenter("segnet", 4)
    assert isinstance(net, SegNet) and net(torch.rand(2, 3, 30, 22)).shape == (2, 4, 30, 22)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())  # no learned upsampling
    # every decoded value starts at the position its encoder maximum came from: with the decoder's
    # convolutions replaced by identities, the unpooled map is zero except at the pooled maxima
    tiny = SegNet(2, width=3, depth=1)
    tiny.decode[0] = torch.nn.Identity()
    tiny.classify = torch.nn.Identity()
    features = tiny.encode[0](x := torch.rand(1, 3, 8, 8))
    out = tiny(x)
    pooled, indices = torch.nn.functional.max_pool2d(features, 2, return_indices=True)
    assert torch.equal(out, torch.nn.functional.max_unpool2d(pooled, indices, 2))
    assert int((out != 0).sum()) <= 3 * 16  # at most one value per 2x2 window
    torch.manual_seed(0)
    history = train_segmenter(
        SegNet(len(SCENE_CLASSES), width=8, depth=2),
        generate_scenes(24, 48, seed=0),
        epochs=3,
        batch_size=8,
        progress=False,
    )
    # seeds 0-2 x threads 1/2/4: loss 1.21-1.60 -> 1.15-1.47 (drops 0.07-0.18)
    assert history.loss[-1] < history.loss[0]


def test_fcn_variants_keep_the_backbone_frozen_and_the_model_untouched(model):
    before = model_state(model)
    x = torch.rand(2, 3, 64, 64)
    for variant in ("32s", "16s", "8s"):
        net = FCN(model, 4, variant)
        out = net(x)
        assert out.shape == (2, 4, 64, 64)
        out.sum().backward()
        assert all(p.grad is None for p in net.backbone.parameters())
        assert all(p.grad is not None for p in net.score.parameters())
    assert net.layers == {32: "bn2", 16: "blocks.4", 8: "blocks.2"}
    assert_untouched(model, before)
    with pytest.raises(ConvscopeError):
        build_segmenter("fcn4s", 4)


def test_tiny_fcn_training_beats_background_only(model):
    torch.manual_seed(0)
    train, val = generate_scenes(48, size=64, seed=0), generate_scenes(16, size=64, seed=1)
    net = FCN(model, len(SCENE_CLASSES), "8s")
    net.eval()
    history = train_segmenter(net, train, val, epochs=3, lr=3e-3, batch_size=16, progress=False)
    assert not net.training  # its flag of before
    assert history.loss[-1] < history.loss[0]
    background_only = SegmentationScores.from_confusion(confusion_matrix(torch.zeros_like(val.masks), val.masks, 4))
    scores = evaluate_segmenter(net, val)
    assert scores.mean_iou == pytest.approx(history.val_miou[-1])
    # seeds 0-2 x threads 1/2/4 (identical across threads): loss 1.34-1.69 -> 0.44-0.65, mean IoU
    # above background-only by 0.237-0.290
    assert scores.mean_iou > background_only.mean_iou + 0.15
    assert predict_masks(net, val.images[:2]).shape == (2, 64, 64)
