"""Take one network back out of a views model (deepscan combine), as the single-image model it was.

    python scripts/extract_view.py deepscan/models/faces.keras 0 --other deepscan/models/default.keras \
        --out face-crops.keras

A views model keeps each network's body but merges their output layers into one: the kernels
side by side divided by the number of views, the biases averaged, then both divided by the
calibration temperature. The kernel of view N comes back exactly from that; its bias needs the
other views' own biases, so each other view's model file is given (--other, in view order) and
checked against the identity the views model recorded. The result keeps view N's training
recipe unknown (it is not stored in a views model), so its spec says where it came from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from deepscan.model import ModelSpec, load_model, model_identity, save_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("views_model", type=Path)
    parser.add_argument("index", type=int, help="which view (0: the first)")
    parser.add_argument("--other", type=Path, action="append", default=[], help="each other view's model, in order")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import keras

    combined = load_model(args.views_model)
    recorded = combined.spec.training["views"]
    others = [i for i in range(len(recorded)) if i != args.index]
    if len(args.other) != len(others):
        parser.error(f"give --other for each of the views {others}")
    for i, path in zip(others, args.other, strict=True):
        if model_identity(path) != recorded[i]["model"]:
            parser.error(f"{path} is not view {i} ({recorded[i]['model']})")
    temperature = float(combined.spec.training["calibration"]["temperature"])
    kernel, bias = combined.keras_model.get_layer("p_fake").get_weights()
    count, width = len(recorded), kernel.shape[0] // len(recorded)
    other_biases = [load_model(path).keras_model.get_layer("p_fake").get_weights()[1] for path in args.other]
    own_kernel = kernel[args.index * width : (args.index + 1) * width] * count * temperature
    own_bias = bias * count * temperature - np.sum(other_biases, axis=0)

    size = combined.spec.image_size
    inputs = keras.Input((size, size, 3), name="pixels")
    body = combined.keras_model.get_layer(f"view{args.index}")
    head = keras.layers.Dense(1, activation="sigmoid", name="p_fake")
    model = keras.Model(inputs, head(body(inputs)), name="compact")
    head.set_weights([own_kernel, own_bias])
    view = recorded[args.index]
    spec = ModelSpec(arch="compact", image_size=size, threshold=0.5)
    spec.training = {
        "trained_on": view["trained_on"],
        "extracted_from": {"model": model_identity(args.views_model), "view": args.index, "was": view["model"]},
        "config": {"faces": True, "face_margin": view["margin"]},
    }
    save_model(model, spec, args.out)
    print(f"saved view {args.index} of {args.views_model.name} ({view['model'].split('@')[0]}) to {args.out}")


if __name__ == "__main__":
    main()
