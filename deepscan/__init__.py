"""deepscan: audit folders of images for deepfakes and AI-generated content.

Importing deepscan does not load TensorFlow; loading a model does.
"""

import os

__version__ = "0.1.0"

# TensorFlow's C++ start-up chatter (CUDA probing, CPU features) is noise on a CLI.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names for type checkers and editors; at run time __getattr__ imports them
    from deepscan.discovery import find_images  # noqa: F401
    from deepscan.faces import FaceSettings  # noqa: F401
    from deepscan.job import ScanJob, ScanSettings, scan  # noqa: F401
    from deepscan.model import Detector, ModelSpec, load_model  # noqa: F401
    from deepscan.output import OutputSettings, scan_to_report  # noqa: F401
    from deepscan.record import Record  # noqa: F401

# The public names and their modules: imported on first use, so `deepscan --help` stays instant.
_EXPORTS = {
    "Detector": "model",
    "FaceSettings": "faces",
    "ModelSpec": "model",
    "OutputSettings": "output",
    "Record": "record",
    "ScanJob": "job",
    "ScanSettings": "job",
    "find_images": "discovery",
    "load_model": "model",
    "scan": "job",
    "scan_to_report": "output",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'deepscan' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"deepscan.{_EXPORTS[name]}"), name)
