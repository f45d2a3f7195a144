"""The HTML report, opened in a real browser (headless Debian chromium driven by Selenium)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deepscan.errors import ExitCode
from deepscan.explain import GradCam, explain_input
from deepscan.model import ARCHITECTURES, build_model, load_model, save_model

from .conftest import write_image

webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Debian's chromium and chromium-driver")


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1200,1400"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def cards(browser) -> list[str]:
    return [card.get_attribute("data-path") for card in browser.find_elements("css selector", "#files .card")]


def severe_console_messages(browser) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


@needs_browser
def test_the_report_in_a_browser(browser, cli, tmp_path: Path, tiny_model: Path):
    from selenium.webdriver.support.ui import Select

    folder = tmp_path / "dump"
    for index in range(8):
        write_image(folder / f"img{index}.png", index, size=(64, 48))
    (folder / "broken.jpg").write_bytes(b"not an image")
    report = tmp_path / "out" / "report.html"
    report.parent.mkdir()
    _, scanned, _ = cli("scan", folder, "--model", tiny_model, "-f", "jsonl", "-q")
    scores = sorted(json.loads(line)["score"] for line in scanned.splitlines() if json.loads(line)["score"])
    cut = (scores[3] + scores[4]) / 2  # half the images are fake
    code, _, _ = cli(
        "scan", folder, "--model", tiny_model, "-q", "--threshold", str(cut), "--html", report, "--explain", "2"
    )
    assert code == ExitCode.UNREADABLE
    browser.get(report.as_uri())
    assert severe_console_messages(browser) == []
    shown = cards(browser)
    assert len(shown) == 8 and len(browser.find_elements("css selector", "#errors tr")) == 1
    fakes = {
        path
        for path in shown
        if "fake" in browser.find_element("css selector", f'[data-path="{path}"]').get_attribute("class")
    }
    assert len(fakes) == 4
    Select(browser.find_element("id", "filter")).select_by_value("fake")
    assert set(cards(browser)) == fakes
    Select(browser.find_element("id", "filter")).select_by_value("all")
    browser.find_element("id", "search").send_keys("img3")
    assert [Path(path).name for path in cards(browser)] == ["img3.png"]
    browser.find_element("id", "search").clear()
    browser.get(report.as_uri())  # fresh state
    heat_maps = browser.find_elements("css selector", "#files img.heat")
    assert len(heat_maps) == 2
    assert all(
        browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
        for img in heat_maps
    )
    captions = [caption.text for caption in browser.find_elements("css selector", "#files .caption")]
    assert len(captions) == 2 and all("red to yellow where the score came from" in text for text in captions)
    facts = {
        row.find_element("css selector", "th").text: row.find_element("css selector", "td").text
        for row in browser.find_elements("css selector", "table.facts tr")
    }
    assert facts["this page"] == str(report) and facts["scanned"] == str(folder)
    assert " by deepscan 0." in facts["made"] and facts["model"].startswith("tiny.keras")
    thumbs = browser.find_elements("css selector", "#files img[alt=thumbnail]")
    assert len(thumbs) == 8
    browser.save_screenshot(str(tmp_path / "report.png"))  # the artefact a reviewer looks at
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert severe_console_messages(browser) == []


@needs_browser
def test_a_hundred_thousand_rows_open_a_page_at_a_time(browser, cli, tmp_path: Path):
    rng = np.random.default_rng(0)
    results = tmp_path / "big.jsonl"
    with results.open("w") as handle:
        for index, score in enumerate(rng.random(100_000)):
            label = "fake" if score >= 0.5 else "real"
            row = {"path": f"/gone/{index:06d}.jpg", "label": label, "score": round(float(score), 6), "error": ""}
            handle.write(json.dumps(row) + "\n")
    page = tmp_path / "big.html"
    code, _, _ = cli("report", results, "--html", page)
    assert code == ExitCode.OK
    browser.get(page.as_uri())
    assert len(cards(browser)) == 100
    assert browser.find_element("id", "count").text == "100000 of 100000 scored files"
    browser.find_element("id", "next").click()
    second = cards(browser)
    assert len(second) == 100 and second[0] not in cards(browser)[:0]
    assert browser.find_element("id", "page").text == "page 2 of 1000"
    assert severe_console_messages(browser) == []


def test_a_page_rebuilt_from_a_report_keeps_what_the_report_knows_of_its_model(cli, photos, tiny_model, tmp_path):
    with_model, without = tmp_path / "m.csv", tmp_path / "plain.csv"
    cli("scan", photos, "--model", tiny_model, "-q", "-o", with_model, "--columns", "model")
    cli("scan", photos, "--model", tiny_model, "-q", "-o", without)
    page = tmp_path / "p.html"
    code, _, err = cli("report", with_model, "--html", page, "--model", tiny_model)
    text = page.read_text()
    assert code == ExitCode.OK and f"wrote {page}" in err and str(page) in text
    assert "tiny.keras@sha256:" in text and ", threshold 0.500" in text and "<th>trained on</th>" in text
    cli("report", without, "--html", page)
    assert "not recorded in the report (give --summary, or scan with --columns model)" in page.read_text()
    summary = tmp_path / "s.json"
    cli("scan", photos, "--model", tiny_model, "-q", "-o", without, "--summary-json", summary)
    code, _, _ = cli("report", without, "--html", page, "--summary", summary)
    text = page.read_text()
    assert code == ExitCode.OK and " by deepscan 0." in text and f"<td>{photos}</td>" in text
    assert "tiny.keras (whole images), threshold 0.500" in text and "not recorded in the report" not in text
    code, _, err = cli("report", without, "--html", page, "--summary", without)
    assert code == ExitCode.USAGE and "not a deepscan --summary-json" in err


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_grad_cam_works_for_every_architecture(tmp_path: Path, arch: str):
    model, spec = build_model(arch, 32)
    save_model(model, spec, tmp_path / "m.keras")
    detector = load_model(tmp_path / "m.keras")
    image = write_image(tmp_path / "a.png", size=(50, 40))
    pixels = explain_input(str(image), None, 32, 0.25)
    heat = GradCam(detector).heat(pixels)
    assert heat.shape == (32, 32) and np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1


def test_a_face_is_explained_on_the_crop_it_was_scored_on(tmp_path: Path):
    image = write_image(tmp_path / "a.png", size=(200, 100))
    crop = explain_input(str(image), (150, 20, 40, 40), 32, 0.0)
    from PIL import Image

    expected = np.asarray(
        Image.open(image).convert("RGB").crop((150, 20, 190, 60)).resize((32, 32), Image.Resampling.BILINEAR)
    )
    assert crop.shape == (32, 32, 3) and np.abs(crop.astype(int) - expected).mean() < 2


@needs_browser
def test_a_hostile_file_name_cannot_hide_the_page(browser, cli, tmp_path: Path, tiny_model: Path):
    """'<!--<script>' in a name would put the tokenizer in its double-escaped state: every file must still show."""
    folder = tmp_path / "dump"
    names = ["x<!--<script>.png", "y<script><b>bold.png", "z&amp;\u202egnp.png", "plain.png"]
    for index, name in enumerate(names):
        write_image(folder / name, index, size=(40, 40))
    page = tmp_path / "page.html"
    code, _, _ = cli("scan", folder, "--model", tiny_model, "-q", "--html", page, "-o", tmp_path / "r.csv")
    assert code == ExitCode.OK
    text = page.read_text()
    assert "<!--<script>" not in text and "Content-Security-Policy" in text
    browser.get(page.as_uri())
    assert sorted(Path(path).name for path in cards(browser)) == sorted(names)
    assert browser.find_elements("css selector", "#files b") == []  # markup in a name stays text
    assert severe_console_messages(browser) == []  # the policy lets the page's own script, style and thumbnails in
    assert all(
        browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
        for img in browser.find_elements("css selector", "#files img[alt=thumbnail]")
    )


def test_an_interrupted_page_leaves_the_previous_page_whole(tmp_path: Path):
    """Ctrl-C while the page is written: the complete page already there stays, and no temporary file is left."""
    from deepscan.html_report import Entry, EntryStore, write_html

    image = write_image(tmp_path / "a.png", 1)
    page = tmp_path / "page.html"
    with EntryStore() as store:
        store.add(Entry(str(image), 0.9, "fake"))
        write_html(page, store, [("model", "m")])
        before = page.read_bytes()

        def interrupted(entry: Entry) -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            write_html(page, store, [("model", "m")], explain=interrupted, explain_count=1)
    assert page.read_bytes() == before and "</html>" in before.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "page.html", "page_files"]
