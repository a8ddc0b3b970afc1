"""End to end, as a person uses it: Debian's Chromium driven by Playwright against a real server.

Chromium is Debian's (``apt-get install -y chromium``, at /usr/bin/chromium), never a
browser downloaded by ``playwright install``. Without it the test is skipped, except in CI
(``CONVSCOPE_REQUIRE_CHROMIUM=1``, set by ``.ci/run``, which installs it). Screenshots go to
``tests/e2e/artifacts/`` (or ``$CONVSCOPE_ARTIFACTS``).
"""

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from convscope.images import to_uint8
from convscope.server import create_app
from convscope.server.run import running
from convscope.testing import assert_untouched, model_state

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
ARTIFACTS = Path(os.environ.get("CONVSCOPE_ARTIFACTS", Path(__file__).parent / "artifacts"))

if not CHROMIUM.exists():
    if os.environ.get("CONVSCOPE_REQUIRE_CHROMIUM"):
        raise RuntimeError(
            "CONVSCOPE_REQUIRE_CHROMIUM is set but /usr/bin/chromium is missing (apt-get install -y chromium)"
        )
    pytest.skip("Debian chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield browser
        browser.close()


def test_upload_a_photo_run_gradcam_and_see_the_overlay(browser, model, chelsea, tmp_path):
    before = model_state(model)
    photo = tmp_path / "my cat.png"
    Image.fromarray(to_uint8(chelsea)).save(photo)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    app = create_app({"efficientnet_lite0": model})
    with running(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.wait_for_selector("#method option[value=gradcam]", state="attached")
        # the first sample's prediction first: its "ready" must not be taken for the upload's
        page.wait_for_function("document.getElementById('status').textContent.startsWith('ready')")
        page.set_input_files("#file", str(photo))
        page.wait_for_function("document.getElementById('status').textContent.startsWith('ready')")
        assert page.text_content("#prediction") == "Egyptian cat"
        assert page.eval_on_selector("#input", "img => img.naturalWidth") == 224  # the uploaded photo shows
        page.select_option("#method", "gradcam")
        page.click("#explain")
        page.wait_for_function(
            "document.getElementById('overlay').complete && document.getElementById('overlay').naturalWidth > 0",
            timeout=60_000,
        )
        # the map with its colour bar (the report's tile), shown at its own size, not shrunk to the photos' 224 px
        assert page.eval_on_selector("#overlay", "img => [img.naturalWidth, img.naturalHeight]") == [343, 260]
        assert page.eval_on_selector("#overlay", "img => img.clientWidth") == 343
        assert page.text_content("#explain-info").startswith('gradcam for "Egyptian cat" at bn2')
        assert page.text_content("#predictions tbody tr:first-child td:first-child") == "Egyptian cat (285)"
        # the layer browser: shapes and receptive fields
        page.fill("#layer-filter", "bn2")
        shown = page.eval_on_selector_all(
            "#layers tbody tr:not([hidden])", "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
        )
        assert all("bn2" in row[0] for row in shown) and len(shown) < 100  # filtered from ~300
        assert ["bn2", "BatchNormAct2d", "1280x7x7"] in [row[:3] for row in shown]
        shot = page.screenshot(path=str(ARTIFACTS / "gradcam.png"), full_page=True)
        assert not errors, errors
        page.close()
    picture = Image.open(io.BytesIO(shot))
    assert picture.width == 1280
    assert_untouched(model, before)


def test_attack_slider_moves_the_confidences(browser, model):
    app = create_app({"efficientnet_lite0": model})
    with running(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.wait_for_function("document.getElementById('status').textContent.startsWith('ready')")
        page.select_option("#attack-method", "fgsm")
        page.fill("#eps", "0")  # dispatches input + change: the attack runs at eps 0
        page.wait_for_function("document.getElementById('attack-info').textContent.includes('→')")
        assert page.text_content("#attack-info") == (  # sample:chelsea centre-cropped, as the CLI fits it
            "tiger cat 39.0% → tiger cat 39.0% (not fooled)"
        )
        page.fill("#eps", "4")
        page.wait_for_function(
            "document.getElementById('attack-info').textContent.includes('(fooled)')", timeout=60_000
        )
        assert page.text_content("#eps-text") == "4/255"
        page.screenshot(path=str(ARTIFACTS / "attack.png"), full_page=True)
        page.close()
