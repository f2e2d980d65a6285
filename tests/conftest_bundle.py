"""Fixtures for bundle, converter and eval tests; import the ones you need from your test module.

- ``int8_bundle`` (session): a real bundle from :func:`bundle_factory.make_test_bundle`, built once
  per test session (needs TensorFlow: use it in tests marked ``tf``);
- ``int8_run_dir`` (session): the run dir it was converted from;
- ``bundle_copy``: a private copy of ``int8_bundle`` to tamper with;
- ``fake_bundle``: a bundle-shaped directory with a valid manifest and placeholder model files,
  for the refusals the loader makes before it reads a model (no TensorFlow needed).

Manifests are written through :func:`edgebot.manifest.write_manifest` (validated and sealed, like
the converter does); :func:`edit_manifest` reseals after an edit unless told not to (a reseal
stands for a converter bug or a deliberate forger, no reseal for a hand edit or corruption).
"""

from __future__ import annotations

import json
import shutil
from typing import Any, Callable
from pathlib import Path

import pytest

from bundle_factory import cached_run_dir, make_test_bundle
from edgebot.bundle import (
    AUTOENCODER_FILE,
    FUSER_FILE,
    HYBRID_FILE,
    SCHEMA_VERSION,
    file_entries,
    write_manifest,
)
from edgebot.features import N_FEATURES, featurizer_info
from edgebot.fusion import FUSER_INPUT_NAMES, FUSER_RAW_FEATURES
from edgebot.manifest import render_manifest, seal


@pytest.fixture(scope="session")
def int8_bundle(tmp_path_factory) -> Path:
    """A real int8 bundle (read-only by convention: copy it with ``bundle_copy`` to change it)."""
    return make_test_bundle(tmp_path_factory.mktemp("int8_bundle"))


@pytest.fixture(scope="session")
def int8_run_dir(int8_bundle) -> Path:
    """The run dir ``int8_bundle`` was converted from."""
    return cached_run_dir()


@pytest.fixture
def bundle_copy(int8_bundle, tmp_path) -> Path:
    dest = tmp_path / "bundle"
    shutil.copytree(int8_bundle, dest)
    return dest


def fake_manifest(path: Path, window: int = 4, **manifest_overrides) -> dict[str, Any]:
    """The content of a valid manifest for placeholder model files in ``path`` (written by this call)."""
    path.mkdir(parents=True, exist_ok=True)
    files = {HYBRID_FILE: b"not a model", AUTOENCODER_FILE: b"not a model either", FUSER_FILE: b"{}"}
    for name, content in files.items():
        (path / name).write_bytes(content)
    q = {"scale": 1 / 255, "zero_point": -128, "dtype": "int8"}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "edgebot_version": "0.1.0",
        "featurizer": featurizer_info(),
        "scaler": {"min": [0.0] * N_FEATURES, "max": [1.0] * N_FEATURES},
        "window": window,
        "models": {
            "hybrid": {"file": HYBRID_FILE, "input": {"shape": [-1, window, N_FEATURES], **q},
                       "output": {"shape": [-1, 1], **q}},
            "autoencoder": {"file": AUTOENCODER_FILE, "input": {"shape": [-1, N_FEATURES], **q},
                            "output": {"shape": [-1, N_FEATURES], **q}},
        },
        "fuser": {"file": FUSER_FILE, "format": "xgboost-json", "inputs": list(FUSER_INPUT_NAMES),
                  "raw_features": list(FUSER_RAW_FEATURES)},
        "thresholds": {"fused": 0.5, "hybrid": 0.5, "autoencoder": 0.01},
        "versions": {},
        "files": file_entries(path, list(files)),
    }
    manifest.update(manifest_overrides)
    return manifest


def write_fake_bundle(path: Path, window: int = 4, **manifest_overrides) -> Path:
    """A bundle directory whose manifest is valid but whose model files are placeholders."""
    write_manifest(path, fake_manifest(path, window, **manifest_overrides))
    return path


@pytest.fixture
def fake_bundle(tmp_path) -> Path:
    return write_fake_bundle(tmp_path / "fake")


def edit_manifest(bundle: Path, edit: Callable[[dict], Any], reseal: bool = True) -> None:
    """Apply ``edit(manifest_dict)`` to a bundle's manifest in place, without validating it.

    ``reseal``: recompute ``bundle_id`` and write the canonical form (the edit is then caught by
    field validation, not by the integrity check).
    """
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_bytes(render_manifest(seal(manifest)) if reseal else json.dumps(manifest).encode())
