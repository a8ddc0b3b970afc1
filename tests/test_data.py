"""The dataset layer: every layout built in tmp from the real labelled samples (foolbox's files),
skipped files, --strict, resuming, and the numbers of attack-eval / robustness on it."""

import pickle
import shutil

import numpy as np
import pytest
import torch

from convscope.attacks.evaluate import AttackReduction, evaluate_attack
from convscope.data import ClassNames, SkipLog, imagenet_wnids, open_dataset, reduce_dataset, samples_folder, stream
from convscope.errors import ConvscopeError
from convscope.robustness.imagenet_c import corruption_errors
from helpers import run_cli

try:
    samples_folder()
except ConvscopeError:  # the labelled samples are a test dependency (the Makefile installs them)
    pytest.skip("the labelled samples: pip install --no-deps foolbox==3.3.4", allow_module_level=True)


def imagenet_samples():
    files = sorted(samples_folder().glob("imagenet_*.jpg"))
    return [(f, int(f.stem.rsplit("_", 1)[1])) for f in files]


def test_bundled_sets_are_real_and_labelled():
    data = open_dataset("samples:imagenet", size=64)
    assert len(data) == 20 and data.labelled
    image, label, name = data[0]
    assert image.shape == (3, 64, 64) and 0 <= image.min() and image.max() <= 1 and image.std() > 0.05
    assert (label, name) == (243, "samples:imagenet/imagenet_00_243.jpg")
    for spec, count in (
        ("samples:cifar10", 10),
        ("samples:cifar100", 100),
        ("samples:mnist", 10),
        ("samples:fashion-mnist", 10),
    ):
        small = open_dataset(spec, size=32)
        assert len(small) == 20 and all(0 <= y < count for y in small.labels)
        assert small[0][0].shape == (3, 32, 32)  # MNIST's grey 28 px -> RGB, crop convention
    with pytest.raises(ConvscopeError, match="known: samples:imagenet"):
        open_dataset("samples:imagenett")


def test_wordnet_id_name_and_id_folders_give_the_same_labels(model, tmp_path):
    wnids = imagenet_wnids()
    assert wnids[0] == "n01440764" and len(wnids) == 1000
    for layout, folder_of in (
        ("wnid", lambda y: wnids[y]),
        ("id", str),
        ("name", lambda y: model.labels[y].replace(" ", "_")),
    ):
        for path, label in imagenet_samples()[:6]:
            (tmp_path / layout / folder_of(label)).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, tmp_path / layout / folder_of(label) / path.name)
        data = open_dataset(tmp_path / layout, 32, labels=model.labels)
        assert data.layout == "class-folders"
        assert sorted(zip(data.ids, data.labels)) == sorted(
            (f"{folder_of(y)}/{p.name}", y) for p, y in imagenet_samples()[:6]
        )
    (tmp_path / "bad" / "not_a_class").mkdir(parents=True)
    shutil.copy(imagenet_samples()[0][0], tmp_path / "bad" / "not_a_class" / "x.jpg")
    with pytest.raises(ConvscopeError, match="class folder 'not_a_class' is not a class id, a WordNet ID"):
        open_dataset(tmp_path / "bad", 32, labels=model.labels)
    assert ClassNames(None).index("n01440764") == 0 and ClassNames(["a", "b"]).index("n01440764") is None


def test_flat_validation_folder_with_loc_csv_or_a_label_file(model, tmp_path):
    flat = tmp_path / "val"
    flat.mkdir()
    rows, lines = ["ImageId,PredictionString"], []
    for number, (path, label) in enumerate(imagenet_samples()[:5], start=1):
        name = f"ILSVRC2012_val_{number:08d}"
        shutil.copy(path, flat / f"{name}.JPEG")
        rows.append(f"{name},{imagenet_wnids()[label]} 1 2 30 40 {imagenet_wnids()[label]} 5 6 70 80")
        lines.append(f"{name}.JPEG {label}")
    (tmp_path / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "labels.txt").write_text("\n".join(lines) + "\n")
    expected = [y for _, y in imagenet_samples()[:5]]
    found = open_dataset(flat, 32, labels=model.labels)  # the csv next to the folder is found
    assert found.layout == "flat-labelled" and found.labels == expected
    assert open_dataset(flat, 32, labels=model.labels, label_file=tmp_path / "labels.txt").labels == expected
    (tmp_path / "broken.txt").write_text("ILSVRC2012_val_00000001.JPEG\n")
    with pytest.raises(ConvscopeError, match="line 1: expected 'file label'"):
        open_dataset(flat, 32, labels=model.labels, label_file=tmp_path / "broken.txt")


def imagenet_c_tree(root, model):
    """fog/{1,3}/WNID/*.JPEG and contrast/{1,3}/... from the first 4 labelled samples."""
    from convscope.images import load_image, save_image
    from convscope.robustness import corrupt

    for path, label in imagenet_samples()[:4]:
        image = load_image(path, 64, "squash")
        for name in ("fog", "contrast"):
            for severity in (1, 3):
                folder = root / name / str(severity) / imagenet_wnids()[label]
                folder.mkdir(parents=True, exist_ok=True)
                save_image(corrupt(image, name, severity, seed=0), folder / (path.stem + ".png"))
    return root


def test_released_imagenet_c_tree_is_read_as_it_is(model, tmp_path):
    root = imagenet_c_tree(tmp_path / "imagenet-c", model)
    data = open_dataset(root, 64, labels=model.labels)
    assert data.layout == "imagenet-c" and len(data) == 16
    assert sorted(set(data.groups)) == [("contrast", 1), ("contrast", 3), ("fog", 1), ("fog", 3)]
    result = corruption_errors(model, data, ["fog", "contrast"], [1, 3], batch_size=5, progress=False, workers=0)
    for name in ("fog", "contrast"):  # each group's error = its own files' error
        for s, severity in enumerate((1, 3)):
            picked = [i for i, g in enumerate(data.groups) if g == (name, severity)]
            images = torch.stack([data[i][0] for i in picked])
            with torch.no_grad():
                wrong = (model(images).argmax(-1) != torch.tensor([data.labels[i] for i in picked])).float().mean()
            assert result.errors[name][s] == pytest.approx(float(wrong))
    assert result.severities == (1, 3) and result.clean != result.clean  # no clean images: NaN
    with pytest.raises(ConvscopeError, match="needs all 5 severities"):
        result.mce()


def test_cifar10_c_npy_files_are_memory_mapped_by_severity_block(tmp_path):
    samples = open_dataset("samples:cifar10", size=None, preprocess="none")
    images = np.stack([(samples[i][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for i in range(4)])
    labels = np.array(samples.labels[:4])
    root = tmp_path / "CIFAR-10-C"
    root.mkdir()
    np.save(root / "labels.npy", np.tile(labels, 5))
    np.save(
        root / "fog.npy",
        np.concatenate([np.clip(images.astype(int) + 10 * s, 0, 255).astype(np.uint8) for s in range(5)]),
    )
    data = open_dataset(root, 32)
    assert data.layout == "cifar10-c" and len(data) == 20
    assert data.groups[4] == ("fog", 2) and data.labels[4] == labels[0] and data.ids[4] == "fog/2/0"
    assert torch.equal(
        data[4][0], torch.from_numpy(np.clip(images[0].astype(int) + 10, 0, 255) / 255).permute(2, 0, 1).float()
    )
    copy = pickle.loads(pickle.dumps(data))  # what a loader worker gets: reopens the memory map
    assert copy._maps == {} and torch.equal(copy[7][0], data[7][0])


def test_cifar10_root_reads_arrays_and_refuses_code(tmp_path):
    samples = open_dataset("samples:cifar10", size=None, preprocess="none")
    arrays = np.stack([(samples[i][0].numpy() * 255).round().astype(np.uint8).reshape(-1) for i in range(3)])
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    with (root / "test_batch").open("wb") as handle:
        pickle.dump({b"data": arrays, b"labels": samples.labels[:3]}, handle)
    data = open_dataset(f"cifar10:{tmp_path}", size=None)
    assert len(data) == 3 and data.labels == samples.labels[:3]
    assert torch.allclose(data[1][0], samples[1][0], atol=0.5 / 255)

    class Evil:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path / "victim"),))

    (tmp_path / "victim").mkdir()
    with (root / "test_batch").open("wb") as handle:
        pickle.dump({b"data": Evil(), b"labels": []}, handle)
    with pytest.raises(ConvscopeError, match="refusing to unpickle shutil.rmtree"):
        open_dataset(f"cifar10:{tmp_path}", size=None)
    assert (tmp_path / "victim").is_dir()


def test_unreadable_files_are_skipped_named_and_counted_or_stop_with_strict(tmp_path):
    for path, label in imagenet_samples()[:5]:
        (tmp_path / str(label)).mkdir(exist_ok=True)
        shutil.copy(path, tmp_path / str(label) / path.name)
    (tmp_path / "243" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    data = open_dataset(tmp_path, 32)
    skips = SkipLog()
    seen = [name for batch in stream(data, 2, workers=0, skips=skips) for name in batch.ids]
    assert len(seen) == 5 and "243/broken.jpg" not in seen
    assert [name for name, _ in skips.items] == ["243/broken.jpg"]
    assert "skipped 1 unreadable file: 243/broken.jpg" == skips.summary()
    with pytest.raises(ConvscopeError, match="243/broken.jpg.*--strict"):
        list(stream(data, 2, workers=0, strict=True))


def test_attack_eval_scores_ground_truth_and_success_over_correct_images(model):
    report = evaluate_attack(model, "samples:imagenet", "fgsm", 2 / 255, size=64, batch_size=10, workers=0)
    assert report.images == report.labelled == 20 and report.ground_truth
    assert report.attacked == round(report.clean_accuracy * 20) < 20  # some are wrong at 64 px
    # robust = correct and not fooled; success is over the attacked (initially correct) images only
    assert report.robust_accuracy * 20 == pytest.approx(report.attacked * (1 - report.success_rate))
    assert report.top5_accuracy >= report.clean_accuracy and report.mean_linf <= 2 / 255 + 1e-6


def test_an_interrupted_run_resumes_to_the_numbers_of_an_uninterrupted_one(model, tmp_path):
    data = open_dataset("samples:imagenet", 48)
    options = dict(batch_size=4, workers=0, shard_batches=1)
    whole = reduce_dataset(AttackReduction(model, "fgsm", 4 / 255), data, **options)
    finished = []

    def crash_after_two(count):
        finished.append(count)
        if len(finished) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reduce_dataset(
            AttackReduction(model, "fgsm", 4 / 255), data, resume=tmp_path / "run", progress=crash_after_two, **options
        )
    assert sorted(p.name for p in (tmp_path / "run").glob("shard-*.json")) == ["shard-00000.json", "shard-00001.json"]
    again = reduce_dataset(AttackReduction(model, "fgsm", 4 / 255), data, resume=tmp_path / "run", **options)
    assert again.resumed == 2 and again.shards == 5
    for key in ("images", "clean", "top5", "attacked", "success", "robust"):
        assert again.state[key] == whole.state[key], key
    assert again.state["linf"] == pytest.approx(whole.state["linf"])
    with pytest.raises(ConvscopeError, match="results of a different run"):
        reduce_dataset(AttackReduction(model, "fgsm", 8 / 255), data, resume=tmp_path / "run", **options)


def test_robustness_cli_labels_the_severities_run_and_refuses_published_ce_on_a_subset(monkeypatch, capsys, tmp_path):
    code, text, err = run_cli(
        monkeypatch,
        capsys,
        "robustness",
        "samples:imagenet",
        "--corruptions",
        "contrast",
        "--severities",
        "1,5",
        "--size",
        "48",
        "--limit",
        "6",
        "--workers",
        "0",
        "--out-dir",
        str(tmp_path),
        "--device",
        "cpu",
    )
    assert code == 0, err
    header = (tmp_path / "corruption_errors.csv").read_text().splitlines()[0]
    assert header == "corruption,error_s1,error_s5,mean_error,ce,relative_ce"
    assert "no CE: AlexNet's published errors average all 5 severities" in " ".join(text.split())


def test_batch_explain_writes_one_map_per_image_and_an_index(model, monkeypatch, capsys, tmp_path):
    out = tmp_path / "maps"
    code, text, err = run_cli(
        monkeypatch,
        capsys,
        "explain",
        "samples:imagenet",
        "--method",
        "saliency",
        "--size",
        "48",
        "--batch-size",
        "8",
        "--target",
        "label",
        "--workers",
        "0",
        "--out",
        str(out),
        "--device",
        "cpu",
    )
    assert code == 0, err
    rows = (out / "index.csv").read_text().splitlines()
    assert rows[0] == "image,label,target,target_name,probability,score,file,row" and len(rows) == 21
    first = rows[1].split(",")
    assert first[0] == "samples:imagenet/imagenet_00_243.jpg" and first[1] == first[2] == "243"
    stored = np.load(out / first[6])
    assert stored["maps"].shape == (8, 1, 48, 48) and stored["ids"][0] == first[0]
    import convscope

    image = open_dataset("samples:imagenet", 48)[0][0][None]
    direct = convscope.attribute(model, image, 243, method="saliency")
    np.testing.assert_allclose(stored["maps"][0], direct[0].numpy(), rtol=1e-4, atol=1e-6)
    code, text, _ = run_cli(
        monkeypatch,
        capsys,
        "explain",
        "samples:imagenet",
        "--method",
        "saliency",
        "--size",
        "48",
        "--batch-size",
        "8",
        "--target",
        "label",
        "--workers",
        "0",
        "--out",
        str(out),
    )
    assert code == 0 and "1 shard(s) resumed" in text  # the same command again: nothing recomputed


def test_examples_and_robustness_skip_name_and_count_a_corrupt_file_or_stop_with_strict(monkeypatch, capsys, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for path, _ in imagenet_samples()[:3]:
        shutil.copy(path, folder / path.name)
    (folder / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    common = ("--size", "32", "--workers", "0", "--device", "cpu")
    code, text, err = run_cli(
        monkeypatch,
        capsys,
        "examples",
        "-l",
        "conv_stem",
        str(folder),
        "--k",
        "2",
        "--size",
        "32",
        "--out",
        str(tmp_path / "ex"),
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert "skipped 1 unreadable file:" in text and "zz_broken.jpg" in text and "conv_stem: 4 images" in text
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "examples",
        "-l",
        "conv_stem",
        str(folder),
        "--k",
        "2",
        "--size",
        "32",
        "--out",
        str(tmp_path / "ex2"),
        "--strict",
        "--device",
        "cpu",
    )
    assert code == 2 and "zz_broken.jpg" in err and "--strict" in err
    code, text, err = run_cli(
        monkeypatch,
        capsys,
        "robustness",
        str(folder),
        "--corruptions",
        "contrast",
        "--out-dir",
        str(tmp_path / "r"),
        *common,
    )
    assert code == 0 and "skipped 1 unreadable file: zz_broken.jpg" in " ".join(text.split()), err
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "robustness",
        str(folder),
        "--corruptions",
        "contrast",
        "--strict",
        "--out-dir",
        str(tmp_path / "r"),
        *common,
    )
    assert code == 2 and "zz_broken.jpg" in err


def test_shape_bias_on_a_model_vs_human_stimulus_folder(model, monkeypatch, capsys, tmp_path):
    from convscope.images import load_image, save_image
    from convscope.robustness.shape_bias import ShapeBiasResult, category_decisions, stimulus_shape_bias

    files = {
        "cat/cat1-clock1.png": "sample:chelsea",
        "clock/clock1-cat1.png": "sample:clock",
        "cat/cat2-cat3.png": "sample:chelsea",
        "clock/clock2-keyboard1.png": "sample:coins",
    }
    for name, spec in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        save_image(load_image(spec, 64), tmp_path / name)
    (tmp_path / "cat" / "cat9-bottle1.png").write_bytes(b"\x89PNG broken")
    result, names, skips = stimulus_shape_bias(model, tmp_path, size=64, workers=0)
    assert sorted(names) == ["cat/cat1-clock1.png", "clock/clock1-cat1.png", "clock/clock2-keyboard1.png"]
    assert [name for name, _ in skips.items] == ["cat/cat9-bottle1.png"]  # skipped and named
    images = torch.cat([load_image(tmp_path / name, 64) for name in names])
    expected = ShapeBiasResult(
        category_decisions(model, images), ["cat", "clock", "clock"], ["clock", "cat", "keyboard"]
    )
    assert result.decisions == expected.decisions and result.shape_bias == expected.shape_bias
    code, text, err = run_cli(
        monkeypatch,
        capsys,
        "shape-bias",
        "--stimuli",
        str(tmp_path),
        "--size",
        "64",
        "--workers",
        "0",
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cpu",
    )
    assert code == 0 and f"shape bias {result.shape_bias:.3f}" in text and "cat9-bottle1.png" in text, err


def test_batch_explain_scores_deletion_and_insertion_with_a_confidence_interval(model, tmp_path):
    from convscope.attribution.batch import explain_dataset, mean_interval
    from convscope.attribution.evaluate import deletion

    data = open_dataset("samples:imagenet", 32)
    index, reduced = explain_dataset(
        model,
        data,
        "saliency",
        tmp_path / "m",
        batch_size=10,
        workers=0,
        metrics=("deletion", "insertion"),
        metric_steps=8,
    )
    rows = [line.split(",") for line in index.read_text().splitlines()]
    assert rows[0][-2:] == ["deletion_auc", "insertion_auc"] and len(rows) == 21
    stored = np.load(tmp_path / "m" / "maps" / "000000.npz")["maps"]
    images = torch.stack([data[i][0] for i in range(10)])
    targets = torch.tensor([int(r[2]) for r in rows[1:11]])
    direct = deletion(model, images, torch.from_numpy(stored), targets, steps=8).auc
    np.testing.assert_allclose([float(r[-2]) for r in rows[1:11]], direct.numpy(), atol=1e-5)
    values = np.array([float(r[-2]) for r in rows[1:]])
    mean, half = reduced.summary["deletion"]
    assert mean == pytest.approx(values.mean(), abs=1e-6)  # the CSV holds 6 decimals
    assert half == pytest.approx(2.093 * values.std(ddof=1) / 20**0.5, rel=1e-2, abs=1e-6)
    assert mean_interval(3.0, 5.0, 2)[0] == 1.5  # t(0.975, 19) = 2.093


def test_train_reads_any_labelled_spec(monkeypatch, capsys, tmp_path):
    code, text, err = run_cli(
        monkeypatch,
        capsys,
        "train",
        "samples:cifar10",
        "--epochs",
        "1",
        "--size",
        "16",
        "--batch-size",
        "8",
        "--eval-size",
        "4",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    assert (tmp_path / "standard.safetensors").is_file() and "standard training" in text
    code, _, err = run_cli(monkeypatch, capsys, "train", "photos", "--epochs", "1")
    assert code == 2 and "training needs a label for every image" in err


def test_sanity_over_a_dataset_averages_the_per_image_scores_with_an_interval(model):
    from convscope.attribution.batch import sanity_dataset
    from convscope.attribution.sanity import sanity_check

    from convscope.data import take

    data = take(open_dataset("samples:imagenet", 32), 10)
    groups = ["network.classifier", "network.blocks.6"]
    rows, names, reduced = sanity_dataset(
        model, data, ["saliency"], "independent", seed=0, batch_size=5, workers=0, groups=groups
    )
    images = torch.stack([data[i][0] for i in range(10)])
    direct = sanity_check(model, images, None, ["saliency"], "independent", groups, seed=0, progress=False)
    assert reduced.images == 10 and len(rows) == len(direct.steps) == 2
    for (_, _step, rho, half, _ssim, _), expected in zip(rows, direct.spearman[0]):
        assert rho == pytest.approx(float(np.nan_to_num(expected).mean()), abs=1e-6)
        # t(0.975, 9) = 2.262
        assert half == pytest.approx(2.262 * float(np.nan_to_num(expected).std(ddof=1)) / 10**0.5, rel=1e-3, abs=1e-9)


def test_batch_explain_writes_one_npy_per_image_equal_to_the_npz_maps(model, monkeypatch, capsys, tmp_path):
    from convscope.attribution.batch import explain_dataset
    from convscope.data import take

    data = take(open_dataset("samples:imagenet", 32), 6)
    options = dict(size=32, batch_size=4, workers=0)
    packed, _ = explain_dataset(model, data, "saliency", tmp_path / "npz", **options)
    single, reduced = explain_dataset(model, data, "saliency", tmp_path / "npy", map_format="npy", **options)
    assert reduced.images == 6 and len(list((tmp_path / "npy" / "maps").glob("*.npy"))) == 6
    for row_npz, row_npy in zip(packed.read_text().splitlines()[1:], single.read_text().splitlines()[1:]):
        a, b = row_npz.split(","), row_npy.split(",")
        assert (
            a[:6] == b[:6] and b[6] == f"maps/{data.ids.index(b[0]):07d}_{b[0].replace('/', '_').replace(':', '_')}.npy"
        )
        assert b[7] == "0"
        np.testing.assert_array_equal(
            np.load(tmp_path / "npy" / b[6]), np.load(tmp_path / "npz" / a[6])["maps"][int(a[7])]
        )
    code, _, err = run_cli(monkeypatch, capsys, "explain", "samples:imagenet", "--format", "png", "--device", "cpu")
    assert code == 2 and "unknown map format 'png'; known: npz, npy" in err


def test_batch_explain_overlays_carry_a_colour_bar_and_say_what_they_show(model, tmp_path):
    """--overlays: one PNG per image, the map over the image with its colour bar (as the report's tiles),
    titled with the image, method, target class and its probability (also in the PNG's metadata)."""
    from PIL import Image

    from convscope.attribution import display_unit
    from convscope.attribution.batch import explain_dataset
    from convscope.data import take
    from convscope.render import overlay_with_bar

    data = take(open_dataset("samples:imagenet", 32), 3)
    index, _ = explain_dataset(
        model, data, "gradcam", tmp_path, size=32, batch_size=4, workers=0, target="label", overlays=True
    )
    rows = [row.split(",") for row in index.read_text().splitlines()[1:]]
    assert len(list((tmp_path / "overlays").glob("*.png"))) == len(rows) == 3
    image_id, _, _, name, probability, *_ = rows[0]
    written = Image.open(tmp_path / "overlays" / "samples_imagenet_imagenet_00_243.jpg.png")
    title = f"{image_id}: gradcam for {name} (p = {float(probability):.3g})"
    assert written.info["Title"] == title and name == "bull mastiff"
    heat = np.load(tmp_path / rows[0][6])["maps"][0]
    expected = overlay_with_bar(data[0][0], torch.from_numpy(heat), "minmax", display_unit("gradcam"), title=title)
    np.testing.assert_array_equal(np.asarray(written.convert("RGB")), np.asarray(expected.convert("RGB")))
