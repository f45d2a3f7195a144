"""Compare face detectors for --faces: MTCNN (what deepscan uses) and OpenCV's Haar cascade.

    python bench/face_detectors.py DIR [DIR...]      # needs mtcnn; the cascade row needs
                                                     # opencv-python-headless<5 (5.x ships none)

Prints, per detector, the images with at least one face, the boxes found and the time per
image on the working-size images deepscan detects on (longest side at most 1,024 pixels).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np

from deepscan.discovery import find_images
from deepscan.faces import load_working_image


def mtcnn_detector() -> Callable[[np.ndarray], int]:
    from deepscan.faces import FaceFinder, WorkingImage

    finder = FaceFinder()
    return lambda pixels: len(finder.find([WorkingImage(pixels, 1.0)])[0])


def haar_detector() -> Callable[[np.ndarray], int]:
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    def detect(pixels: np.ndarray) -> int:
        grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
        return len(cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(40, 40)))

    return detect


def main() -> None:
    images = [load_working_image(path).pixels for path in find_images(sys.argv[1:])]
    print(f"{len(images)} images")
    for name, make in (("MTCNN (mtcnn 1.0, three stages)", mtcnn_detector), ("OpenCV Haar cascade", haar_detector)):
        try:
            detect = make()
        except ImportError as err:
            print(f"{name}: not installed ({err})")
            continue
        detect(images[0])  # warm up
        started = time.perf_counter()
        counts = [detect(pixels) for pixels in images]
        per_image = (time.perf_counter() - started) / len(images) * 1000
        with_face = sum(count > 0 for count in counts)
        print(f"{name}: {with_face}/{len(images)} images with a face, {sum(counts)} boxes, {per_image:.0f} ms/image")


if __name__ == "__main__":
    main()
