"""deepscan: audit folders of images for deepfakes and AI-generated content.

Importing deepscan does not load TensorFlow; loading a model does.
"""

import os

__version__ = "0.1.0"

# TensorFlow's C++ start-up chatter (CUDA probing, CPU features) is noise on a CLI.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from deepscan.discovery import find_images
from deepscan.faces import FaceSettings
from deepscan.job import ScanJob, ScanSettings, scan
from deepscan.model import Detector, ModelSpec, load_model
from deepscan.record import Record

__all__ = [
    "Detector",
    "FaceSettings",
    "ModelSpec",
    "Record",
    "ScanJob",
    "ScanSettings",
    "__version__",
    "find_images",
    "load_model",
    "scan",
]
