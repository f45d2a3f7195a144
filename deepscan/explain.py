"""Grad-CAM heat maps: where in an image the model's score came from.

The gradients of the score's logit with respect to the model's last convolutional
feature map (the last layer whose output is still an image, before global
pooling or flattening) weight that map's channels; their weighted sum,
rectified and scaled to 0..1, is the heat map (Selvaraju et al., 2017).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from deepscan.model import Detector
from deepscan.pipeline import ImageError
from deepscan.runtime import tensorflow

if TYPE_CHECKING:
    from deepscan.html_report import Entry
    from deepscan.scorers import ScanModel


class GradCam:
    """Heat maps for one model: built once, then one gradient pass per image."""

    def __init__(self, detector: Detector) -> None:
        tf = tensorflow()
        import keras

        model = detector.keras_model
        head = model.get_layer("p_fake")
        # The network that saw the image (of a views model, the first view's: the face crop) and its part of the head.
        network = model.get_layer("view0") if detector.spec.views else keras.Model(model.inputs, head.input)
        feature_layer = [layer for layer in network.layers if len(layer.output.shape) == 4][-1]
        self._model = keras.Model(network.inputs, [feature_layer.output, network.outputs[0]])
        self._head = head.get_weights()[0][: network.outputs[0].shape[-1]]
        self._tf = tf
        self.size = detector.spec.image_size

    def heat(self, pixels: np.ndarray) -> np.ndarray:
        """A (size, size) map in 0..1 for one uint8 image of the model's input size."""
        tf = self._tf
        batch = tf.cast(pixels[None], tf.float32)
        with tf.GradientTape() as tape:
            features, pooled = self._model(batch, training=False)
            target = tf.matmul(pooled, self._head)[:, 0]  # the score's logit, as far as this network gives it
        gradients = tape.gradient(target, features)
        weights = tf.reduce_mean(gradients, axis=(1, 2))
        cam = tf.nn.relu(tf.reduce_sum(features * weights[:, None, None, :], axis=-1))[0].numpy()
        top = float(cam.max())
        cam = cam / top if top > 0 else cam
        return (
            np.asarray(Image.fromarray(np.uint8(cam * 255)).resize((self.size, self.size), Image.Resampling.BILINEAR))
            / 255.0
        )


def overlay(pixels: np.ndarray, heat: np.ndarray) -> Image.Image:
    """The image dimmed, with the heat map laid over it in red to yellow (strongest where the model looked)."""
    base = np.asarray(pixels, np.float32) * 0.55
    colour = np.stack([np.ones_like(heat), heat, np.zeros_like(heat)], axis=-1) * 255.0
    alpha = (0.75 * heat)[..., None]
    mixed = base * (1 - alpha) + colour * alpha
    return Image.fromarray(np.clip(mixed, 0, 255).astype(np.uint8))


def explain_input(path: str, box: tuple[int, int, int, int] | None, size: int, margin: float) -> np.ndarray:
    """The pixels the model scored: the whole image, or (face mode, ``box`` given) the crop of that face."""
    from deepscan.faces import Face, crop_face, load_working_image
    from deepscan.pipeline import decode_image

    if box is None:
        return decode_image(path, size)
    return crop_face(load_working_image(path), Face(box, 1.0), size, margin)


def explainer(models: list[ScanModel]) -> Callable[[Entry], Image.Image | None]:
    """Heat maps for report entries, each by the model that scored it (the face model for a face's crop, cropped
    at its first view's margin, as in face mode)."""
    cams: dict[str, GradCam] = {}
    by_identity = {model.identity: model for model in models}

    def explain(entry: Entry) -> Image.Image | None:
        model = by_identity.get(entry.model) or models[0 if entry.explain_box is not None else -1]
        if model.identity not in cams:
            cams[model.identity] = GradCam(model.detector())
        cam = cams[model.identity]
        box = tuple(entry.explain_box) if entry.explain_box is not None else None
        try:
            pixels = explain_input(entry.path, box, cam.size, model.margins[0])  # type: ignore[arg-type]
        except ImageError:
            return None
        return overlay(pixels, cam.heat(pixels))

    return explain
