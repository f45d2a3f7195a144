"""Views models (deepscan combine): each face judged in several framings, by the models that were made for them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepscan.errors import ExitCode, ModelError
from deepscan.model import DEFAULT_FACE_MARGIN, ModelSpec, build_model, load_model, read_spec, save_model
from deepscan.scorers import ScanModel

from .conftest import TINY, write_image


def logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two untrained single-image models of different architectures, as 'deepscan train' saves them."""
    import keras

    folder = tmp_path_factory.mktemp("parts")
    paths = []
    for seed, arch in enumerate(("compact", "reference")):
        keras.utils.set_random_seed(seed)
        model, spec = build_model(arch, TINY)
        save_model(model, spec, folder / f"{arch}.keras")
        paths.append(folder / f"{arch}.keras")
    return paths


def test_a_views_model_gives_the_mean_logit_of_its_parts_each_on_its_view(parts: list[Path], tmp_path: Path):
    from deepscan.views import stack_views

    detectors = [load_model(path) for path in parts]
    spec = ModelSpec(arch="views", image_size=TINY, views=[0.1, 0.4])
    save_model(stack_views(detectors), spec, tmp_path / "views.keras")
    views = load_model(tmp_path / "views.keras")  # in Keras safe mode: built-in layers only

    side_by_side = np.random.default_rng(0).integers(0, 256, (5, TINY, 2 * TINY, 3), dtype=np.uint8)
    first = detectors[0].predict(side_by_side[:, :, :TINY])
    second = detectors[1].predict(side_by_side[:, :, TINY:])
    expected = 1 / (1 + np.exp(-(logit(first) + logit(second)) / 2))
    assert np.allclose(views.predict(side_by_side), expected, atol=1e-5)

    whole = side_by_side[:, :, :TINY]  # one image (whole-image mode): every view sees it
    assert np.allclose(views.predict(whole), views.predict(np.concatenate([whole, whole], axis=2)), atol=1e-6)


def test_only_single_image_models_of_one_size_combine(parts: list[Path], tmp_path: Path):
    from deepscan.views import stack_views

    model, spec = build_model("compact", 48)
    save_model(model, spec, tmp_path / "big.keras")
    with pytest.raises(ModelError, match="one input size"):
        stack_views([load_model(parts[0]), load_model(tmp_path / "big.keras")])
    views = stack_views([load_model(path) for path in parts])
    save_model(views, ModelSpec("views", TINY, views=[0, 1]), tmp_path / "v.keras")
    with pytest.raises(ModelError, match="already a views model"):
        stack_views([load_model(tmp_path / "v.keras"), load_model(parts[0])])


def test_a_views_spec_is_checked_when_read(tmp_path: Path):
    with pytest.raises(ValueError, match="views"):
        ModelSpec.from_json(json.dumps({"arch": "views", "image_size": 32, "views": [0.1, -1]}))
    spec = ModelSpec.from_json(json.dumps({"arch": "views", "image_size": 32, "views": [0.1, 1]}))
    assert spec.input_shape == (32, 64, 3) and spec.face_margin == 0.1


def test_heat_maps_of_a_views_model_show_its_first_view(parts: list[Path], tmp_path: Path):
    from deepscan.explain import GradCam, explain_input
    from deepscan.views import stack_views

    detectors = [load_model(path) for path in parts]
    spec = ModelSpec(arch="views", image_size=TINY, views=[0.1, 0.4])
    save_model(stack_views(detectors), spec, tmp_path / "views.keras")
    pixels = explain_input(str(write_image(tmp_path / "a.png", size=(50, 40))), None, TINY, 0.1)
    heat = GradCam(load_model(tmp_path / "views.keras")).heat(pixels)
    assert heat.shape == (TINY, TINY) and heat.max() > 0
    assert np.allclose(heat, GradCam(detectors[0]).heat(pixels), atol=1e-4)  # the first view's network alone


@pytest.fixture(scope="module")
def labelled_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """real/ and fake/: the astronaut (public domain, in scikit-image) in four framings, and a face-free image."""
    pytest.importorskip("mtcnn")
    data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("labelled")
    astronaut = Image.fromarray(data.astronaut())
    for label, pads in (("real", (0, 40)), ("fake", (90, 140))):
        (root / label).mkdir()
        for pad in pads:
            framed = Image.new("RGB", (astronaut.width + pad, astronaut.height + pad // 2), (30, 30, 30))
            framed.paste(astronaut, (pad, pad // 2))
            framed.save(root / label / f"astronaut_{pad}.png")
    write_image(root / "real" / "noise.png", size=(120, 100))
    return root


def test_combine_calibrates_in_face_mode_and_scan_crops_each_view_at_its_margin(
    cli, parts: list[Path], labelled_faces: Path, tmp_path: Path
):
    from deepscan.faces import Face, crop_face, load_working_image

    out = tmp_path / "views.keras"
    args = ["--view", parts[0], "--margin", "0.1", "--view", parts[1], "--margin", "0.5"]
    code, _, err = cli("combine", labelled_faces, *args, "--out", out, "--trained-on", "test faces")
    spec = read_spec(out)
    assert code == ExitCode.OK and f"saved {out}" in err
    assert spec.views == [0.1, 0.5] and spec.input_shape == (TINY, 2 * TINY, 3) and spec.trained_on == "test faces"
    assert [view["model"].split("@")[0] for view in spec.training["views"]] == ["compact.keras", "reference.keras"]
    temperature = spec.training["calibration"]["temperature"]

    crops = tmp_path / "crops"
    face_file = labelled_faces / "fake" / "astronaut_90.png"
    code, out_text, _ = cli("scan", face_file, "--faces", "--model", out, "--save-crops", crops, "-f", "jsonl")
    (row,) = map(json.loads, out_text.splitlines())
    (saved,) = crops.iterdir()
    image = load_working_image(face_file)
    face = Face(tuple(row["box"]), 1.0)
    views = [crop_face(image, face, TINY, margin) for margin in (0.1, 0.5)]
    assert code == ExitCode.OK and np.array_equal(np.asarray(Image.open(saved)), np.concatenate(views, axis=1))
    first, second = (load_model(path).predict(view[None])[0] for path, view in zip(parts, views, strict=True))
    expected = 1 / (1 + np.exp(-(logit(first) + logit(second)) / 2 / temperature))
    assert row["score"] == pytest.approx(expected, abs=1e-5)
    assert row["label"] == ("fake" if row["score"] >= spec.threshold else "real")

    code, card, _ = cli("evaluate", labelled_faces, "--faces", "--model", out, "-f", "json")
    assert code == ExitCode.OK
    assert json.loads(card)["roc_auc"] == pytest.approx(spec.training["val_metrics"]["roc_auc"])
    assert "margins 0.1, 0.5 of its size" in cli("info", out)[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--margin", "0.1"], "at least two --view"),
        (["--view", "{b}", "--margin", "0.1"], "one per view"),
    ],
)
def test_combine_usage_errors_are_one_line(cli, parts: list[Path], tmp_path: Path, args: list[str], message: str):
    args = [arg.format(b=parts[1]) for arg in args]
    code, _, err = cli("combine", tmp_path, "--view", parts[0], *args, "--out", tmp_path / "v.keras")
    assert code == ExitCode.USAGE and message in err and len(err.strip().splitlines()) == 1


def test_face_crop_margins_are_resolved_once_with_the_model(tmp_path: Path):
    """--face-margin sets a model's first view, the others keep theirs; a model without one gets the default."""
    views = ModelSpec("compact", 32, views=[0.1, 0.2])
    assert views.crop_margins() == [0.1, 0.2] and views.crop_margins(0.3) == [0.3, 0.2]
    assert ModelSpec("compact", 32).crop_margins() == [DEFAULT_FACE_MARGIN]
    model = tmp_path / "m.keras"
    network, spec = build_model("reference", 32)
    save_model(network, spec, model)
    assert ScanModel(model, "faces", explicit_margin=0.25).margins == [0.25]
