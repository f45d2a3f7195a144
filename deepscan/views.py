"""Models of several views: each face judged in more than one framing, each framing by its own network.

A views model holds saved single-image models side by side. Its input is
one crop of the face per view, each at that view's margin, laid side by
side; each network sees its own view, and one Dense head (every network's
own output weights, divided by the number of views) gives the sigmoid of
the mean of their pre-sigmoid values. The combination is then calibrated
and its threshold chosen on labelled validation folders scanned exactly as
``scan --faces`` scans them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deepscan.errors import ModelError
from deepscan.evaluate import Evaluation, labelled_images, score_labelled
from deepscan.faces import FaceSettings
from deepscan.job import ScanJob, ScanSettings
from deepscan.model import Detector, ModelSpec, fresh_file, load_model, model_identity, save_model
from deepscan.scorers import DEFAULT_BATCH_SIZE
from deepscan.train import calibrate_on_validation

if TYPE_CHECKING:
    import keras

ARCH = "views"


@dataclass
class CombineResult:
    model_path: Path
    evaluation: Evaluation  # pooled over the validation folders
    sources: dict[str, Evaluation]


def stack_views(parts: Sequence[Detector]) -> keras.Model:
    """One Keras model scoring the views side by side: the sigmoid of the mean of the parts' logits."""
    import keras
    from keras import layers

    size = parts[0].spec.image_size
    if any(part.spec.image_size != size for part in parts):
        raise ModelError("the models of a views model must take one input size")
    count = len(parts)
    inputs = keras.Input((size, size * count, 3), name="views")
    features, kernels, biases = [], [], []
    for index, part in enumerate(parts):
        if part.spec.views:
            raise ModelError(f"{part.path} is already a views model; combine single-image models")
        try:
            head = part.keras_model.get_layer("p_fake")
        except ValueError:
            raise ModelError(f"{part.path} has no 'p_fake' output layer to combine") from None
        pixels = layers.Cropping2D(((0, 0), (index * size, (count - 1 - index) * size)), name=f"view{index}_pixels")
        body = keras.Model(part.keras_model.inputs, head.input, name=f"view{index}")
        features.append(body(pixels(inputs)))
        kernel, bias = head.get_weights()
        kernels.append(kernel)
        biases.append(bias)
    output = layers.Dense(1, activation="sigmoid", name="p_fake")
    model = keras.Model(inputs, output(layers.Concatenate()(features)), name=ARCH)
    output.set_weights([np.concatenate(kernels) / count, np.mean(biases, axis=0)])
    return model


def combine_views(
    models: Sequence[Path],
    margins: Sequence[float | None],
    data_dirs: Sequence[Path],
    out: Path,
    target_fpr: Sequence[float] = (),
    trained_on: str = "",
    batch_size: int = DEFAULT_BATCH_SIZE,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> CombineResult:
    """Combine single-image models into a views model, calibrate it on ``data_dirs`` in face mode, save to ``out``.

    ``margins[i]`` frames view i (None: the model's own face margin, else
    the face-mode default). Each folder holds real/ and fake/; each is
    reported apart and pooled, and the threshold meets ``target_fpr`` on
    every one of them (one rate for all, or one each; none: it maximises
    pooled balanced accuracy).
    """
    if len(margins) != len(models):
        raise ModelError(f"{len(models)} models but {len(margins)} margins: one per model (None: its own)")
    parts = [load_model(path) for path in models]
    model = stack_views(parts)
    views = [part.spec.crop_margins(margin)[0] for margin, part in zip(margins, parts, strict=True)]
    spec = ModelSpec(arch=ARCH, image_size=parts[0].spec.image_size, views=views)
    uncalibrated = fresh_file(out)
    save_model(model, spec, uncalibrated)
    try:
        log(f"scoring {len(data_dirs)} validation folder(s) in face mode")
        settings = ScanSettings(model=uncalibrated, faces=FaceSettings(), evidence=False, batch_size=batch_size)
        raw = {}
        with ScanJob(settings) as job:
            for folder in data_dirs:
                raw[str(folder)] = score_labelled(*labelled_images(str(folder)), job)
    finally:
        uncalibrated.unlink(missing_ok=True)
    evaluation, cards, figures = calibrate_on_validation(model, spec, raw, target_fpr)
    spec.training = {
        "trained_on": trained_on or "; ".join(part.spec.trained_on for part in parts),
        "input": "face crops (as scan --faces), one per view",
        "views": [
            {"model": model_identity(part.path), "margin": margin, "trained_on": part.spec.trained_on}
            for part, margin in zip(parts, views, strict=True)
        ],
        "target_fpr": list(target_fpr),
        **figures,
    }
    save_model(model, spec, out)
    return CombineResult(out, evaluation, cards)
