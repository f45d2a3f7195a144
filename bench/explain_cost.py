"""What the HTML report costs: thumbnails and Grad-CAM heat maps per image, for each packaged model.

python bench/explain_cost.py [--count 50]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from run import generate  # bench/run.py: the same generated files

from deepscan.explain import GradCam, explain_input
from deepscan.html_report import Entry, thumbnail
from deepscan.model import load_model, packaged_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="deepscan-explain-"))
    paths = generate(work / "crops", args.count, {"crop256": 1.0})
    started = time.perf_counter()
    for index, path in enumerate(paths):
        thumbnail(Entry(path, 0.5, "real"), work / f"{index}.jpg")
    print(f"thumbnail: {1000 * (time.perf_counter() - started) / len(paths):.1f} ms per image")
    for faces in (False, True):
        detector = load_model(packaged_model(faces))
        cam = GradCam(detector)
        inputs = [explain_input(path, None, cam.size, 0.25) for path in paths]
        cam.heat(inputs[0])  # the first call traces the gradient graph
        started = time.perf_counter()
        for pixels in inputs:
            cam.heat(pixels)
        elapsed = (time.perf_counter() - started) / len(inputs)
        print(f"Grad-CAM, {detector.path.name} ({detector.spec.arch}): {1000 * elapsed:.1f} ms per image")


if __name__ == "__main__":
    main()
