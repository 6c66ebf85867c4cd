"""The dlib models, located and loaded once per process.

The model files ship in the ``face-recognition-models`` distribution. Its
``__init__`` imports ``pkg_resources`` (removed from setuptools 82), so the
package is never imported here: :func:`model_dir` finds its directory through
``importlib.util.find_spec`` and the files are opened by path.

Loading takes about half a second and ~100 MB; :func:`get_models` caches the
loaded objects per process, so each worker of a process pool loads them once
(see :func:`cloudcounter.vision.pool.init_worker`).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudcounter.vision.errors import ModelsUnavailableError

MODELS_PACKAGE = "face_recognition_models"
SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
FACE_DESCRIPTOR_RESNET = "dlib_face_recognition_resnet_model_v1.dat"
#: Overrides the directory holding the ``.dat`` files (for packagers).
MODEL_DIR_ENV = "CLOUDCOUNTER_DLIB_MODEL_DIR"


def model_dir() -> Path:
    """Directory holding dlib's ``.dat`` model files, without importing the package."""
    override = os.environ.get(MODEL_DIR_ENV)
    if override:
        path = Path(override)
    else:
        spec = importlib.util.find_spec(MODELS_PACKAGE)
        locations = list(spec.submodule_search_locations or []) if spec else []
        if not locations:
            raise ModelsUnavailableError(
                f"package {MODELS_PACKAGE!r} is not installed "
                "(pip install face-recognition-models==0.3.0)"
            )
        path = Path(locations[0]) / "models"
    for name in (SHAPE_PREDICTOR_68, FACE_DESCRIPTOR_RESNET):
        if not (path / name).is_file():
            raise ModelsUnavailableError(f"model file {name} missing in {path}")
    return path


@dataclass(frozen=True)
class Models:
    """The three dlib objects the core uses (dlib types are untyped: ``Any``)."""

    detector: Any  # dlib.fhog_object_detector (HOG + linear SVM)
    shape_predictor: Any  # dlib.shape_predictor, 68 points
    face_encoder: Any  # dlib.face_recognition_model_v1 (ResNet, 128-d)


_lock = threading.Lock()
_models: Models | None = None


def get_models() -> Models:
    """Load the models on first use and return the same objects afterwards."""
    global _models
    if _models is None:
        with _lock:
            if _models is None:
                _models = _load()
    return _models


def models_loaded() -> bool:
    """Whether this process has loaded the models already."""
    return _models is not None


def _load() -> Models:
    import dlib  # imported lazily: importing the package must stay cheap

    directory = model_dir()
    return Models(
        detector=dlib.get_frontal_face_detector(),
        shape_predictor=dlib.shape_predictor(str(directory / SHAPE_PREDICTOR_68)),
        face_encoder=dlib.face_recognition_model_v1(str(directory / FACE_DESCRIPTOR_RESNET)),
    )
