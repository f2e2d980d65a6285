"""The wheel carries every subpackage, and the gateway install pulls no training stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUBPACKAGES = [
    "edgebot", "edgebot.readers", "edgebot.train", "edgebot.edge", "edgebot.edge.meter", "edgebot.edge.bench",
    "edgebot.edge.sources", "edgebot.edge.sinks", "edgebot.edge.config", "edgebot.convert",
]
HEAVY = ("tensorflow", "tensorflow-cpu", "keras", "pandas", "scikit-learn", "torch")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    (whl,) = out.glob("edgebot-*.whl")
    return whl


def test_wheel_imports_every_subpackage(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = (
        "import importlib, json, sys\n"
        f"mods = {SUBPACKAGES!r}\n"
        "print(json.dumps({m: importlib.import_module(m).__file__ for m in mods}))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    files = json.loads(res.stdout)
    for mod, path in files.items():
        assert path.startswith(str(target)), f"{mod} imported from {path}, not from the wheel"
    names = zipfile.ZipFile(wheel).namelist()
    assert "edgebot/cli.py" in names and "edgebot/edge/agent.py" in names
    assert not any(n.startswith(("core/", "edge/", "train/", "convert/")) for n in names)
    # the symlinked wings arrive as real files, not links
    info = {i.filename: i for i in zipfile.ZipFile(wheel).infolist()}
    assert not any((i.external_attr >> 16) & 0o170000 == 0o120000 for i in info.values())
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert entry and "edgebot = edgebot.cli:main" in zipfile.ZipFile(wheel).read(entry[0]).decode()


def test_static_tools_resolve_every_import_of_the_work_tree():
    """No import mapping: the wings are real paths under edgebot/ (symlinks), so mypy finds them."""
    for wing in ("train", "edge", "convert"):
        link = REPO / "edgebot" / wing
        assert link.is_symlink() and link.resolve() == (REPO / wing).resolve()
    res = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "-c",
                          "import edgebot.edge.agent, edgebot.train.fit, edgebot.convert.bundle_writer"],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert "import-not-found" not in res.stdout, res.stdout


@pytest.mark.slow
def test_edge_extra_pulls_no_training_stack(wheel):
    """Resolve `edgebot[edge]` from the registry (dry run) and list what it would install."""
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-",
         f"edgebot[edge] @ {wheel.as_uri()}"],
        capture_output=True, text=True, timeout=600,
    )
    if res.returncode != 0 and ("Could not find" in res.stderr or "network" in res.stderr.lower()):
        pytest.skip(f"package index not reachable: {res.stderr.strip().splitlines()[-1]}")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    names = {item["metadata"]["name"].lower() for item in report["install"]}
    assert "paho-mqtt" in names and "xgboost-cpu" in names and "numpy" in names and "msgspec" in names
    assert not names & set(HEAVY), f"the edge extra pulls {sorted(names & set(HEAVY))}"
    assert not any(n.startswith("nvidia") for n in names)


def test_the_wheel_ships_the_default_bundle_and_grows_by_less_than_1_mb(wheel):
    """edgebot/default_bundle/ (every file its manifest lists) is in the wheel; it adds < 1 MB."""
    bundle = REPO / "edgebot" / "default_bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    with zipfile.ZipFile(wheel) as zf:
        entries = {i.filename: i for i in zf.infolist() if i.filename.startswith("edgebot/default_bundle/")}
    shipped = {name.rsplit("/", 1)[1] for name in entries}
    assert {"manifest.json", *manifest["files"]} <= shipped
    grown = sum(i.compress_size for i in entries.values()) + sum(30 + 46 + 2 * len(n) for n in entries)  # + zip headers
    assert grown < 1_000_000, f"the default bundle adds {grown} bytes to the wheel"
