"""The one-file HTML report: self-contained, shows real results, grows with the features."""

import base64
import io
import re

import pytest
import torch
from PIL import Image

from convscope.errors import ConvscopeError
from convscope.registry import RegistryEntry
from convscope.report import REPORT_SECTIONS, build_report
from convscope.testing import assert_untouched, model_state


def embedded_pictures(html: str) -> list[Image.Image]:
    sources = re.findall(r'<img src="([^"]*)"', html)
    pictures = []
    for source in sources:
        assert source.startswith("data:image/png;base64,"), source[:60]
        pictures.append(Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))))
    return pictures


@pytest.fixture(scope="module")
def quick_report(model, chelsea):
    before = model_state(model)
    report = build_report(model, chelsea, "sample:chelsea", sections=["prediction", "layers", "attack"])
    assert_untouched(model, before)
    return report


def test_report_is_one_self_contained_file_with_the_prediction(quick_report, tmp_path):
    report = quick_report
    path = report.save(tmp_path / "sub" / "report.html")
    html = path.read_text()
    # nothing fetched from anywhere: no scripts, stylesheets, frames or remote URLs
    assert not re.search(r"<script|<link|<iframe|src=\"(?!data:)|url\(", html)
    pictures = embedded_pictures(html)
    assert len(pictures) == sum(len(s.figures) for s in report.sections) == 2 + 3
    assert pictures[0].size == (224, 224)  # the input itself
    # the top-5 table: chelsea -> Egyptian cat, p = 0.793
    assert re.search(r"<td>1</td><td>285</td><td>Egyptian cat</td><td>0\.79\d\d</td>", html)
    # the layer table has the last spatial layer with its shape
    assert "<td>bn2</td><td>BatchNormAct2d</td><td>1280x7x7</td>" in html
    # timings of every section and the total
    timings = report.sections[-1]
    assert [row[0] for row in timings.rows] == [s.title for s in report.sections[:-1]] + ["total"]


def test_tall_figures_show_at_their_own_size(quick_report, tmp_path):
    """A grid of small panels (the sanity check) is not shrunk to a row's height, where its text is unreadable."""
    import copy

    from convscope.sections import Figure, Section

    grid = Image.new("RGB", (1200, 1000), "white")  # at 100 dpi: 12 x 10 in
    assert Figure(grid).width == 432 and Figure(grid, tall=True).width == 1200
    report = copy.copy(quick_report)
    report.sections = [*quick_report.sections, Section("grid", figures=[Figure(grid, "g", tall=True)])]
    html = report.save(tmp_path / "tall.html").read_text()
    assert 'style="width: 1200px; max-height: none"' in html and 'style="width: 224px"' in html


def test_adversarial_row_shows_confidences_that_moved(quick_report):
    attack = quick_report.sections[2]
    original, perturbation, adversarial = (f.caption for f in attack.figures)
    assert original.startswith("original: Egyptian cat (79.3%)")
    assert "eps = 2/255 (L∞ 2.0/255)" in perturbation
    assert adversarial.startswith("adversarial: ") and "Egyptian cat" not in adversarial
    # the perturbation picture is 0.5 + delta / (2 eps): FGSM moves pixels by exactly +-eps (black/white),
    # except where clipping to [0, 1] cut the step short
    values = torch.tensor(list(attack.figures[1].picture.getdata())).flatten()
    assert ((values <= 1) | (values >= 254)).float().mean() > 0.95


def test_every_attribution_method_appears_side_by_side(model, small_batch):
    from convscope.attribution import METHODS

    image = torch.nn.functional.interpolate(small_batch[:1], size=64, mode="area")  # size does not matter here
    report = build_report(model, image, "chelsea-64", sections=["prediction", "attribution"])
    figures = report.sections[1].figures
    assert [f.caption.split(" (")[0] for f in figures] == METHODS.names()
    # each tile is the overlay with its colour bar, all tiles the same size whatever the image's
    assert len({f.picture.size for f in figures}) == 1 and figures[0].picture.width > figures[0].picture.height
    target = report.sections[0].rows[0][2]
    assert report.sections[1].title == f"Attribution maps for “{target}” ({report.sections[0].rows[0][1]})"


def test_a_failing_section_is_shown_not_hidden(model, small_batch, monkeypatch):
    def broken(model, image, context):
        raise RuntimeError("this feature is broken")

    monkeypatch.setitem(REPORT_SECTIONS._entries, "broken", RegistryEntry("broken", broken))
    with pytest.warns(UserWarning, match="report section 'broken' failed"):
        report = build_report(model, small_batch[:1], "x", sections=["broken"])
    assert report.sections[0].error == "RuntimeError: this feature is broken"
    assert "this section failed: RuntimeError: this feature is broken" in report.html()


def test_bad_requests_fail_before_any_work(model, small_batch):
    with pytest.raises(ConvscopeError, match="unknown report section 'predictoin'; did you mean prediction"):
        build_report(model, small_batch[:1], sections=["predictoin"])
    with pytest.raises(ConvscopeError, match="one image"):
        build_report(model, small_batch)


def test_progress_callback_sees_every_section_and_can_stop_the_report(model, small_batch):
    seen = []
    build_report(model, small_batch[:1], sections=["prediction", "layers"], on_section=lambda *a: seen.append(a))
    assert seen == [("prediction", 0, 2), ("layers", 1, 2)]

    class Stop(Exception):
        pass

    def stop(name, done, total):
        if name == "layers":
            raise Stop

    with pytest.raises(Stop):
        build_report(model, small_batch[:1], sections=["prediction", "layers"], on_section=stop)


def test_report_command_writes_the_file_and_rejects_bad_input(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from convscope import report as report_module
    from convscope.cli import app

    monkeypatch.setattr(
        report_module.REPORT_SECTIONS,
        "_entries",
        {k: v for k, v in REPORT_SECTIONS._entries.items() if k in ("prediction", "layers")},
    )
    out = tmp_path / "r" / "report.html"
    result = CliRunner().invoke(app, ["report", "sample:chelsea", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Egyptian cat" in out.read_text() and f"wrote {out}" in result.output.replace("\n", "")
    result = CliRunner().invoke(app, ["report", str(tmp_path / "missing.png"), "--out", str(out)])
    assert isinstance(result.exception, ConvscopeError) and "no such image file" in str(result.exception)
