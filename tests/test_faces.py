"""--faces on a public-domain face photograph shipped in scikit-image (NASA's astronaut portrait)."""

from __future__ import annotations

import builtins
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepscan.errors import DeepscanError, ExitCode

from .conftest import write_image

pytest.importorskip("mtcnn")
data = pytest.importorskip("skimage.data")


def face_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def box_of(row: dict) -> np.ndarray:
    return np.array([int(v) for v in row["box"].split(",")])


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The astronaut, the same padded on the left and top, turned by EXIF, and a face-free image."""
    root = tmp_path_factory.mktemp("faces")
    astronaut = Image.fromarray(data.astronaut())
    astronaut.save(root / "astronaut.png")
    padded = Image.new("RGB", (astronaut.width + 150, astronaut.height + 70), (20, 20, 20))
    padded.paste(astronaut, (150, 70))
    padded.save(root / "padded.png")
    turned = astronaut.rotate(90, expand=True)  # stored turned a quarter left...
    exif = turned.getexif()
    exif[0x0112] = 6  # ...and tagged "rotate 90 clockwise to display"
    turned.save(root / "turned.jpg", exif=exif, quality=95)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(root / "noise.png")
    (root / "broken.jpg").write_bytes(b"not an image")
    return root


@pytest.fixture(scope="module")
def scanned(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, list[dict]], str, Path]:
    from typer.testing import CliRunner

    from deepscan.cli import app

    crops = tmp_path_factory.mktemp("crops")
    result = CliRunner().invoke(app, ["scan", str(photos), "--faces", "--save-crops", str(crops)])
    by_file: dict[str, list[dict]] = {}
    for row in face_rows(result.stdout):
        by_file.setdefault(Path(row["path"]).name, []).append(row)
    return result.exit_code, by_file, result.stderr, crops


def test_the_face_is_found_in_original_pixel_coordinates(scanned):
    _, by_file, _, _ = scanned
    (face,) = by_file["astronaut.png"]
    assert face["face"] == "0" and float(face["face_confidence"]) > 0.9
    x, y, w, h = box_of(face)
    assert x >= 0 and y >= 0 and x + w <= 512 and y + h <= 512 and 40 <= w <= 300
    assert 0 <= float(face["score"]) <= 1 and face["label"] in ("real", "fake")


def test_boxes_follow_padding_and_exif_rotation(scanned):
    _, by_file, _, _ = scanned
    (face,) = by_file["astronaut.png"]
    (padded,) = by_file["padded.png"]
    (turned,) = by_file["turned.jpg"]
    np.testing.assert_allclose(box_of(padded), box_of(face) + np.array([150, 70, 0, 0]), atol=4)
    np.testing.assert_allclose(box_of(turned), box_of(face), atol=8)  # displayed upright, like the original


def test_an_image_without_faces_is_scored_whole_and_broken_files_are_error_rows(scanned):
    code, by_file, stderr, _ = scanned
    (noise,) = by_file["noise.png"]
    assert noise["face"] == "" and noise["box"] == "" and noise["score"] != ""
    (broken,) = by_file["broken.jpg"]
    assert broken["error"] and broken["score"] == "" and broken["face"] == ""
    assert code == ExitCode.UNREADABLE
    summary = " ".join(stderr.split())
    assert "faces │ 3" in summary and "files without faces │ 1" in summary


def test_crops_are_saved_for_review(scanned):
    _, _, _, crops = scanned
    names = sorted(path.name.split(".")[0] + "." + path.name.split(".")[-2] for path in crops.iterdir())
    assert names == ["astronaut.face0", "noise.whole", "padded.face0", "turned.face0"]


def test_a_face_crop_holds_only_the_pictures_own_pixels():
    from deepscan.faces import Face, WorkingImage, crop_face

    gradient = np.linspace(0, 255, 200 * 300 * 3).reshape(200, 300, 3).astype(np.uint8)
    picture = WorkingImage(gradient, scale=2.0)  # boxes are in original pixels: twice the working ones
    filled = crop_face(WorkingImage(gradient[:, :200], 1.0), Face((10, 5, 180, 190), 0.99), 200, margin=0.25)
    assert np.array_equal(filled, gradient[:, :200])  # a face that fills its picture gives the picture
    corner = crop_face(picture, Face((0, 0, 100, 100), 0.99), 60, margin=0.1)  # 50 px face at the top-left edge
    assert np.array_equal(corner, gradient[:60, :60])  # moved in from the edges, not padded
    tall = WorkingImage(gradient[:, :100], 1.0)  # a face wider than the picture: the largest square inside
    assert np.array_equal(crop_face(tall, Face((0, 40, 100, 100), 0.99), 100, 0.1), gradient[40:140, :100])


def test_bounds_on_faces(cli, photos: Path):
    code, out, _ = cli("scan", photos / "astronaut.png", "--faces", "--min-face-size", "400")
    (row,) = face_rows(out)
    assert code == ExitCode.OK and row["face"] == ""  # the only face is smaller: scored whole


def test_face_mode_with_cache_and_resume_gives_the_same_rows(cli, photos: Path, tmp_path: Path):
    cache, first, again = tmp_path / "c.db", tmp_path / "first.csv", tmp_path / "again.csv"
    code, _, _ = cli("scan", photos, "--faces", "--cache", cache, "--out", first, "-q")
    assert code == ExitCode.UNREADABLE
    code, _, err = cli("scan", photos, "--faces", "--cache", cache, "--out", again, "-q", "-v")
    assert code == ExitCode.UNREADABLE and again.read_text() == first.read_text()
    assert "loading model" not in err  # every file came from the cache
    lines = first.read_text().splitlines()
    again.write_text("\n".join(lines[:3]) + "\n")  # interrupted after the first files
    code, _, _ = cli("scan", photos, "--faces", "--out", again, "--resume", "-q")
    assert code == ExitCode.UNREADABLE and again.read_text() == first.read_text()


def test_evaluate_faces_scores_each_file_by_its_most_suspicious_face(cli, photos: Path, tiny_model, tmp_path: Path):
    labelled = tmp_path / "labelled"
    for label, names in (
        ("real", ["astronaut.png", "noise.png"]),
        ("fake", ["padded.png", "turned.jpg", "broken.jpg"]),
    ):
        (labelled / label).mkdir(parents=True)
        for name in names:
            (labelled / label / name).write_bytes((photos / name).read_bytes())
    _, out, _ = cli("scan", labelled, "--faces", "--model", tiny_model, "--format", "jsonl", "-q")
    best: dict[str, float] = {}
    for row in map(json.loads, out.splitlines()):
        if row["score"] is not None:
            best[row["path"]] = max(best.get(row["path"], 0.0), row["score"])
    cut = float(np.median(list(best.values())))  # between two files' scores: half are flagged
    code, out, _ = cli("evaluate", labelled, "--faces", "--model", tiny_model, "--threshold", str(cut), "-f", "json")
    card = json.loads(out)
    assert code == ExitCode.OK and card["faces"] is True
    assert card["images"] == len(best) == 4 and card["unreadable"] == 1
    fakes = {path for path in best if "/fake/" in path}
    flagged = {path for path, score in best.items() if score >= cut}
    assert card["confusion"]["fake"]["fake"] == len(flagged & fakes)
    assert card["confusion"]["real"]["fake"] == len(flagged - fakes)
    code, _, err = cli("evaluate", labelled, "--faces", "--robustness")
    assert code == ExitCode.USAGE and "--faces" in err


def test_face_mode_uses_the_packaged_face_crop_model(cli, photos: Path, tmp_path: Path):
    from deepscan.model import model_identity, packaged_model

    code, out, _ = cli("info", "--faces", "--json")
    spec = json.loads(out)
    assert code == ExitCode.OK and spec["training"]["input"] == "face crops (as scan --faces), one per view"
    # Its wider view is judged by the packaged whole-image model itself: retraining that one means combining again.
    assert spec["training"]["views"][1]["model"] == model_identity(packaged_model())
    summary = tmp_path / "summary.json"
    code, _, _ = cli("scan", photos / "astronaut.png", "--faces", "-q", "--summary-json", summary)
    figures = json.loads(summary.read_text())
    assert code == ExitCode.OK and figures["model"].startswith("faces.keras@")
    assert [m["model"].split("@")[0] for m in figures["models"]] == ["faces.keras", "default.keras"]
    code, _, _ = cli("scan", photos / "astronaut.png", "-q", "--summary-json", summary)
    assert code == ExitCode.OK and json.loads(summary.read_text())["model"].startswith("default.keras@")


def test_in_face_mode_files_without_a_face_go_to_the_whole_image_model(cli, photos: Path):
    from deepscan.model import packaged_model, read_spec

    trio = (photos / "astronaut.png", photos / "noise.png", photos / "broken.jpg")
    code, out, _ = cli("scan", *trio, "--faces", "-q", "--columns", "model", "--format", "jsonl")
    rows = {Path(row["path"]).name: row for row in map(json.loads, out.splitlines())}
    assert code == ExitCode.UNREADABLE
    assert rows["broken.jpg"]["model"].startswith("faces.keras@")  # no model scored it: the run's own is named
    assert rows["astronaut.png"]["face"] == 0 and rows["astronaut.png"]["model"].startswith("faces.keras@")
    noise = rows["noise.png"]
    assert noise["face"] is None and noise["model"].startswith("default.keras@")
    whole_threshold = read_spec(packaged_model()).threshold
    assert noise["label"] == ("fake" if noise["score"] >= whole_threshold else "real")


def test_a_missing_detector_is_a_clear_error(monkeypatch):
    from deepscan.faces import FaceFinder

    real_import = builtins.__import__

    def no_mtcnn(name, *args, **kwargs):
        if name == "mtcnn":
            raise ImportError("No module named 'mtcnn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mtcnn)
    with pytest.raises(DeepscanError, match=r"pip install 'deepscan-audit\[faces\]'"):
        FaceFinder()


def test_face_mode_rows_stay_one_per_file_for_broken_inputs(cli, tmp_path: Path):
    write_image(tmp_path / "small.png", size=(30, 30))
    (tmp_path / "empty.png").write_bytes(b"")
    _code, out, _ = cli("scan", tmp_path, "--faces", "-q")
    rows = face_rows(out)
    assert [Path(r["path"]).name for r in rows] == ["empty.png", "small.png"]
    assert rows[0]["error"] == "empty file" and rows[1]["score"] != ""


def test_train_on_face_crops_detects_once_and_scan_crops_as_trained(cli, photos: Path, tmp_path: Path, monkeypatch):
    from deepscan.faces import Face, FaceFinder, crop_face, load_working_image
    from deepscan.model import read_spec
    from deepscan.train import Augmentation, TrainConfig, train

    data_dir = tmp_path / "data"
    for label, sources in (("real", ["astronaut.png", "padded.png"]), ("fake", ["noise.png"])):
        for copy in range(3):
            for name in sources:
                (data_dir / label).mkdir(parents=True, exist_ok=True)
                (data_dir / label / f"{copy}_{name}").write_bytes((photos / name).read_bytes())
    out = tmp_path / "m.keras"
    config = TrainConfig(
        arch="residual",
        image_size=32,
        epochs=1,
        batch_size=4,
        val_split=0.34,
        faces=True,
        face_margin=0.3,
        augmentation=Augmentation(rotation=0, shift=0, jpeg=0, blur=0),
    )
    train([data_dir], out, config, log=lambda line: None)
    spec = read_spec(out)
    assert spec.training["input"] == "face crops (as scan --faces)"
    assert spec.training["faces_found"] == 6  # every astronaut copy; the noise has none
    assert out.with_name("m.faces.json").exists()

    crops = tmp_path / "crops"  # scan --faces crops as the model was trained: the margin travels inside it
    code, report, _ = cli("scan", photos / "astronaut.png", "--faces", "--model", out, "--save-crops", crops)
    (row,) = face_rows(report)
    (saved,) = crops.iterdir()
    expected = crop_face(load_working_image(photos / "astronaut.png"), Face(tuple(box_of(row)), 1.0), 32, 0.3)
    assert code == ExitCode.OK and spec.face_margin == 0.3
    assert "margin 0.3 of the face size" in cli("info", out)[1]  # info says how the model's faces are cropped
    assert np.array_equal(np.asarray(Image.open(saved)), expected)

    def no_detection(self, images):
        raise AssertionError("faces were detected again")

    monkeypatch.setattr(FaceFinder, "find", no_detection)
    train([data_dir], out, config, log=lambda line: None)  # the detections come from m.faces.json


def test_a_file_without_a_face_gets_a_plain_scans_score_in_face_mode(cli, tmp_path: Path):
    """One model, one decode: a faceless JPEG (decoded at another scale for detection) scores as a plain scan does."""
    folder = tmp_path / "faceless"
    folder.mkdir()
    Image.fromarray(data.rocket()).save(folder / "rocket.jpg", quality=90)  # JPEG: DCT-scaled decoding differs
    Image.fromarray(data.coffee()).resize((1200, 800)).save(folder / "coffee.jpg", quality=85)
    _, plain, _ = cli("scan", folder, "-q", "-f", "jsonl")
    _, faces, _ = cli("scan", folder, "--faces", "-q", "-f", "jsonl")
    plain_rows, in_face_mode = ([json.loads(line) for line in text.splitlines()] for text in (plain, faces))
    assert [row["face"] for row in in_face_mode] == [None, None]
    assert [row["score"] for row in in_face_mode] == [row["score"] for row in plain_rows]
