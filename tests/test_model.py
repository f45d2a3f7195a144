import zipfile
from pathlib import Path

import numpy as np
import pytest

from deepscan.errors import ModelError
from deepscan.model import ARCHITECTURES, ModelSpec, build_model, load_model, read_spec, save_model


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_builds_saves_and_loads_with_its_spec(tmp_path: Path, arch: str):
    model, spec = build_model(arch, 32)
    assert model.output_shape == (None, 1)
    spec.threshold = 0.42
    path = tmp_path / f"{arch}.keras"
    save_model(model, spec, path)
    assert read_spec(path) == spec
    detector = load_model(path)
    pixels = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    scores = detector.predict(pixels)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_allclose(scores, model.predict(pixels.astype("float32"), verbose=0).ravel(), rtol=1e-5)


def test_spec_labels_by_threshold():
    spec = ModelSpec(arch="x", image_size=8, threshold=0.7)
    assert spec.label(0.69) == "real" and spec.label(0.7) == "fake"
    assert spec.label(0.69, threshold=0.5) == "fake"


def test_the_packaged_default_model_loads():
    detector = load_model()
    assert detector.path.name == "default.keras"
    size = detector.spec.image_size
    assert detector.predict(np.zeros((1, size, size, 3), np.uint8)).shape == (1,)


def test_files_that_are_not_deepscan_models_get_a_clear_error(tmp_path: Path):
    not_zip = tmp_path / "photo.keras"
    not_zip.write_bytes(b"\xff\xd8 jpeg bytes")
    with pytest.raises(ModelError, match="not a Keras model file"):
        load_model(not_zip)
    plain = tmp_path / "plain.keras"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(ModelError, match="not a deepscan one"):
        load_model(plain)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.keras")


def test_a_model_with_python_code_is_refused_unless_trusted(tmp_path: Path):
    import keras

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.Flatten()(keras.layers.Lambda(lambda x: x * 2)(inputs))
    )
    path = tmp_path / "lambda.keras"
    save_model(keras.Model(inputs, outputs), ModelSpec(arch="custom", image_size=8), path)
    with pytest.raises(ModelError, match="arbitrary code"):
        load_model(path)
    assert load_model(path, trust=True).spec.arch == "custom"


def test_a_model_of_the_wrong_shape_is_refused(tmp_path: Path):
    import keras

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(inputs))
    path = tmp_path / "two.keras"
    save_model(keras.Model(inputs, outputs), ModelSpec(arch="custom", image_size=8), path)
    with pytest.raises(ModelError, match="deepscan needs"):
        load_model(path)
