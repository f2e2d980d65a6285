"""``edgebot bundle info [BUNDLE]`` (the model card summary) and ``edgebot bundle verify BUNDLE``.

``verify`` runs every check of the gateway loader (:func:`edgebot.bundle.load_bundle`) one at a
time and prints each on its own line, ``ok`` or ``FAILED`` (with the loader's one-line reason);
a check that needs a failed one is ``skipped``. Exit 0 when every check passed, 2 otherwise.
Both commands use the edge path only (no TensorFlow).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Optional

import click

from edgebot.errors import BundleError, EdgebotError

OK, FAILED, SKIPPED = "ok", "FAILED", "skipped"


# ----------------------------------------------------------------------------------------------
# verify


def verify_checks(bundle_dir: str | os.PathLike[str], trust: Optional[str] = None) -> list[tuple[str, str, str]]:
    """Every loader check of ``bundle_dir``, in the loader's order.

    Returns
    -------
    list of (check, status, detail)
        ``status`` is ``ok``, ``FAILED`` or ``skipped``; ``detail`` says what was found or why it failed.
    """
    from edgebot import __version__
    from edgebot.bundle import _check_model, check_featurizer, load_booster, sha256_file
    from edgebot.trees import load_trees
    from edgebot.manifest import MANIFEST, MAX_MANIFEST_BYTES, Manifest, parse_manifest_bytes
    from edgebot.runtime import Int8Model, find_interpreter

    path = Path(bundle_dir)
    rows: list[tuple[str, str, str]] = []
    state: dict[str, Any] = {}

    def check(name: str, fn: Callable[[], str], needs: tuple[str, ...] = ()) -> bool:
        if any(state.get(n) is not True for n in needs):
            rows.append((name, SKIPPED, "needs " + ", ".join(n for n in needs if state.get(n) is not True)))
            state[name] = False
            return False
        try:
            detail = fn()
        except EdgebotError as exc:
            rows.append((name, FAILED, str(exc)))
            state[name] = False
            return False
        rows.append((name, OK, detail))
        state[name] = True
        return True

    def directory() -> str:
        if not path.is_dir():
            raise BundleError(f"bundle {path} is not a directory: give the directory `edgebot convert --out` wrote")
        return str(path)

    def manifest_integrity() -> str:
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise BundleError(f"{path} has no {MANIFEST}: it is not a bundle; create one with `edgebot convert`")
        with open(mpath, "rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
        state["data"] = parse_manifest_bytes(raw, str(mpath))
        return f"schema {state['data']['schema_version']}, bundle id {state['data']['bundle_id'][:12]}, canonical form"

    def signature() -> str:
        if trust is None:
            return "not checked (no --trust)"
        from edgebot.signing import verify_bundle_signature

        return f"signed by trusted key {verify_bundle_signature(path, state['data']['bundle_id'], trust)}"

    def fields() -> str:
        state["manifest"] = Manifest.validate(state["data"])
        m = state["manifest"]
        return f"{m.n_features} features, window {m.window}, {m.sequence}, fused threshold {m.thresholds['fused']:.4f}"

    check("bundle directory", directory)
    check("manifest integrity (schema, bundle_id, canonical bytes)", manifest_integrity, ("bundle directory",))
    check("signature", signature, ("manifest integrity (schema, bundle_id, canonical bytes)",))
    check("manifest fields", fields, ("manifest integrity (schema, bundle_id, canonical bytes)",))
    manifest: Optional[Manifest] = state.get("manifest")
    for name, (digest, size) in (manifest.files.items() if manifest else ()):
        def file_ok(name: str = name, digest: str = digest, size: int = size) -> str:
            fpath = path / name
            if not fpath.is_file():
                raise BundleError(f"bundle file {name} is missing from {path}: copy the whole bundle directory again")
            if sha256_file(fpath) != digest:
                raise BundleError(f"bundle file {name} does not match its sha256 in the manifest (tampered or "
                                  "corrupted): copy the bundle again from where it was converted")
            return f"{size:,} bytes, sha256 {digest[:12]}"

        check(f"file {name}", file_ok, ("manifest fields",))
    files_ok = tuple(f"file {n}" for n in (manifest.files if manifest else ())) or ("manifest fields",)
    def _manifest() -> Manifest:  # only called by checks that need "manifest fields" (so it is set)
        assert manifest is not None
        return manifest

    check("featurizer", lambda: (lambda p: f"{p.name} profile, hash {p.hash}")(check_featurizer(_manifest())),
          ("manifest fields",))

    def runtime() -> str:
        state["interpreter"], name = find_interpreter(None)
        return name

    check("TFLite runtime", runtime)
    for key in ("hybrid", "autoencoder"):
        def model_ok(key: str = key) -> str:
            entry = getattr(_manifest(), key)
            model = Int8Model((path / entry.file).read_bytes(), entry.file, state["interpreter"], num_threads=1)
            _check_model(model, entry)
            return f"{entry.file}: input {list(entry.input.shape)}, output {list(entry.output.shape)}, int8"

        check(f"model {key}", model_ok, ("TFLite runtime", "featurizer") + files_ok)

    def fuser_ok() -> str:
        m = _manifest()
        n = 2 + len(m.fuser_raw_features)
        trees = load_trees(path / m.fuser_file, n)
        try:
            from edgebot.lean import import_xgboost

            import_xgboost()
        except ImportError:
            return f"{m.fuser_file}: {trees.n_trees} trees, {n} inputs (xgboost not installed: not cross-checked)"
        # The gateway evaluates the trees in numpy (edgebot.trees): check it scores as xgboost does.
        import numpy as np

        booster = load_booster(path / m.fuser_file, n)
        from edgebot.fusion import fused_probability, margin_kind

        rows_in = np.random.default_rng(0).random((512, n), dtype=np.float32)
        kind = margin_kind(trees)
        diff = float(np.max(np.abs(fused_probability(trees, rows_in, kind) - fused_probability(booster, rows_in, kind))))
        if diff > 1e-6:
            raise BundleError(f"{m.fuser_file}: the numpy trees score up to {diff:.2g} away from xgboost's")
        start = f", trees start from {kind}" if kind else ""
        return (f"{m.fuser_file}: XGBoost, {trees.n_trees} trees, {n} inputs{start}; numpy trees = xgboost "
                f"(max diff {diff:.1g})")

    check("fuser", fuser_ok, ("featurizer",) + files_ok)
    if manifest is not None:
        rows.append(("edgebot version", OK, f"converted by {manifest.edgebot_version}, this is {__version__}"
                     + ("" if manifest.edgebot_version == __version__ else " (loads: same featurizer)")))
    return rows


# ----------------------------------------------------------------------------------------------
# info


def bundle_info(bundle_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The model card summary of a bundle (checked by the loader's manifest and file checks)."""
    from edgebot.bundle import load_manifest, verify_files
    from edgebot.manifest import VERIFICATION_FILE
    from edgebot.shipped import is_default

    path = Path(bundle_dir)
    manifest = load_manifest(path)
    verify_files(path, manifest)
    d = manifest.data
    training = d.get("training", {})
    verification = {}
    if (path / VERIFICATION_FILE).is_file():
        verification = json.loads((path / VERIFICATION_FILE).read_text(encoding="utf-8"))
    data = training.get("data", [])
    return {
        "bundle": str(path),
        "default": is_default(path),
        "bundle_id": manifest.bundle_id,
        "edgebot_version": manifest.edgebot_version,
        "created": d.get("created"),
        "profile": manifest.profile or "zeek",
        "window": manifest.window,
        "thresholds": manifest.thresholds,
        "training": {
            "command": training.get("command"),
            "split": training.get("split"),
            "seed": training.get("seed"),
            "fpr_budget": training.get("fpr_budget"),
            "files": len(data),
            "rows": sum(int(e.get("rows", 0)) for e in data),
            "data": data,
            "metrics": training.get("metrics", {}),
        },
        "int8_vs_float": {k: verification.get(k) for k in ("f1_drop", "decision_agreement", "test_windows")}
        | {"float_f1": (verification.get("float") or {}).get("f1"), "int8_f1": (verification.get("int8") or {}).get("f1")},
        "sizes": {name: size for name, (_, size) in manifest.files.items()},
        "size_bytes": sum(size for _, size in manifest.files.values()),
        "signed": (path / "signature.json").is_file(),
    }


def _f(x: Any, spec: str = ".4f") -> str:
    return format(x, spec) if isinstance(x, (int, float)) else "-"


def format_info(info: dict[str, Any]) -> str:
    """``edgebot bundle info`` as text."""
    t = info["training"]
    split = t.get("split") or {}
    split_name = split.get("name", split.get("kind", split)) if isinstance(split, dict) else split
    lines = [
        f"bundle {info['bundle_id'][:12]} ({info['bundle']})" + (" - the default bundle shipped with edgebot"
                                                                 if info["default"] else ""),
        f"  id {info['bundle_id']}",
        f"  converted by edgebot {info['edgebot_version']} on {info['created'] or '-'}; "
        f"{info['profile']} profile, window {info['window']}; {'signed' if info['signed'] else 'not signed'}",
        f"data: {t['files']} training files, {t['rows']:,} flows; split {split_name}, seed {t['seed']}, "
        f"FPR budget {t['fpr_budget']}",
    ]
    if t.get("command"):
        lines.append(f"  command: {t['command'] if len(t['command']) <= 200 else t['command'][:197] + '...'}")
    lines.append("figures on the held-out test split (training metrics):")
    lines.append(f"  {'model':<14} {'F1':>7} {'precision':>10} {'recall':>7} {'FPR':>8}")
    for name, m in sorted(t.get("metrics", {}).items()):
        lines.append(f"  {name:<14} {_f(m.get('f1')):>7} {_f(m.get('precision')):>10} {_f(m.get('recall')):>7} "
                     f"{_f(m.get('fpr')):>8}")
    q = info["int8_vs_float"]
    lines.append(f"int8 vs float (fused F1): {_f(q['int8_f1'])} vs {_f(q['float_f1'])}, drop {_f(q['f1_drop'], '+.4f')}, "
                 f"decisions agree on {_f(100 * q['decision_agreement'] if q['decision_agreement'] is not None else None, '.2f')} % "
                 f"of {q['test_windows']} test windows")
    sizes = ", ".join(f"{n} {s / 1024:.1f} KB" for n, s in sorted(info["sizes"].items()))
    lines.append(f"size: {info['size_bytes'] / 1024:.1f} KB ({sizes})")
    if info["default"]:
        lines.append("model card: docs/model-card.md (intended use, known limits, figures on the bundled captures)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# the commands


def register(main: click.Group, handle_errors, context_settings: dict, echo_json) -> None:
    """Add the ``bundle`` group (``info``, ``verify``) to the CLI."""

    @main.group(context_settings=context_settings, short_help="Describe or check a model bundle.")
    def bundle() -> None:
        """Describe a bundle (its model card summary) or run every loader check on it."""

    @bundle.command("info", context_settings=context_settings, short_help="Model card summary: data, figures, size, id.")
    @click.argument("bundle_dir", required=False, type=click.Path(file_okay=False))
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    @handle_errors
    def info(bundle_dir, as_json) -> None:
        """What a bundle was trained on, its figures, size and id (default: the shipped bundle).

        \b
        Example:
          edgebot bundle info
          edgebot bundle info bundles/iot23 --json
        """
        if bundle_dir is None:
            from edgebot.shipped import default_bundle

            bundle_dir = default_bundle()
        result = bundle_info(bundle_dir)
        if as_json:
            echo_json(result)
        else:
            click.echo(format_info(result))

    @bundle.command("verify", context_settings=context_settings, short_help="Every loader check, ok or FAILED; exit 0 or 2.")
    @click.argument("bundle_dir", type=click.Path())
    @click.option("--trust", "trust", type=click.Path(dir_okay=False),
                  help="Also check the signature by this public key (KEY.pub of edgebot keygen).")
    @handle_errors
    def verify(bundle_dir, trust) -> None:
        """Run every check the gateway loader makes, one per line (ok / FAILED); exit 0 if all pass, else 2.

        \b
        Example:
          edgebot bundle verify bundles/iot23
        """
        import sys

        rows = verify_checks(bundle_dir, trust)
        width = max(len(name) for name, _, _ in rows)
        for name, status, detail in rows:
            click.echo(f"{name:<{width}}  {status:<7}  {detail}")
        failed = [r for r in rows if r[1] != OK]
        click.echo(f"{len(rows) - len(failed)} of {len(rows)} checks passed" if failed else f"all {len(rows)} checks passed")
        sys.exit(2 if failed else 0)
