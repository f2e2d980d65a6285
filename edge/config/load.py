"""Reading the agent's TOML file and command-line overrides into :data:`AgentConfig`.

Every error names its key path (``edgebot.toml: mqtt.keepalive: expected an integer, got 'abc'``),
unknown keys get a "did you mean" from the schema's own key paths, and all problems are collected
(``--check-config`` lists them). Precedence, highest first: command-line overrides, the config
file, the defaults of the schema.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgebot.edge.config.schema import AgentConfig, SourceConfig
from edgebot.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 uses the tomli backport (the edge extra installs it)
    import tomli as tomllib

__all__ = ["load_config", "check_config", "config_error", "all_paths"]


def config_error(problems: list[str]) -> ConfigError:
    """One ``ConfigError`` naming the first problem; ``.problems`` holds all of them."""
    more = f" (and {len(problems) - 1} more problem(s); --check-config lists them all)" \
        if len(problems) > 1 else ""
    error = ConfigError(problems[0] + more)
    error.problems = list(problems)  # type: ignore[attr-defined]
    return error


def _settings(cls: type) -> dict[str, tuple[Any, dataclasses.Field[Any]]]:
    """The settable fields of a section dataclass: name -> (resolved type, Field)."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)
            if not f.metadata.get("internal")}


def all_paths(cls: Any = AgentConfig, prefix: str = "") -> list[str]:
    """Every key path of the schema (``gateway_id``, ``mqtt``, ``mqtt.url``...), in schema order."""
    paths = []
    for name, (tp, _) in _settings(cls).items():
        paths.append(prefix + name)
        if dataclasses.is_dataclass(tp):
            paths.extend(all_paths(tp, f"{prefix}{name}."))
    return paths


def _unknown_key(path: str, siblings: list[str]) -> str:
    """``unknown key 'mqtt.hots' (did you mean 'mqtt.host'?)``, looking wide if needed."""
    leaf = path.rsplit(".", 1)[-1]
    close = [p for p in all_paths() if p.rsplit(".", 1)[-1] == leaf][:1]  # wrong section
    close = close or difflib.get_close_matches(path, siblings, n=1, cutoff=0.6)
    close = close or difflib.get_close_matches(path, all_paths(), n=1, cutoff=0.75)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key '{path}'{hint}"


_DESCRIPTIONS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _convert(value: Any, tp: Any, from_text: bool) -> tuple[bool, Any]:
    """Check (and for command-line text, convert) one value. Returns (ok, value)."""
    args = typing.get_args(tp)
    if type(None) in args:
        tp = next(a for a in args if a is not type(None))
    if from_text and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if tp is bool:
        if isinstance(value, bool):
            return True, value
        if from_text and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return True, value.strip().lower() in _TRUE
        return False, value
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value
        if from_text and isinstance(value, str):
            try:
                return True, int(value.strip())
            except ValueError:
                return False, value
        return False, value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return math.isfinite(value), float(value)
        if from_text and isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return False, value
            return math.isfinite(number), number
        return False, value
    if tp is str:
        return isinstance(value, str), value
    raise TypeError(f"unsupported setting type {tp!r}")  # a bug in the schema, not user input


def _resolve_path(value: str, base_dir: Path | None) -> str:
    if value == "-" or base_dir is None:
        return value
    expanded = Path(os.path.expanduser(value))  # leaves an unknown ~user as it is (Path.expanduser raises)
    return str(expanded if expanded.is_absolute() else base_dir / expanded)


def _apply_table(section: Any, data: Mapping[str, Any], prefix: str, errors: list[str],
                 where: str, base_dir: Path | None) -> None:
    """Copy a TOML table into a section dataclass, collecting every error."""
    fields = _settings(type(section))
    siblings = [prefix + name for name in fields]
    for key, value in data.items():
        path = prefix + key
        if key not in fields:
            errors.append(where + _unknown_key(path, siblings))
            continue
        tp, spec = fields[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                errors.append(f"{where}{path}: expected a table ([{path}]), got {value!r}")
            else:
                _apply_table(getattr(section, key), value, path + ".", errors, where, base_dir)
            continue
        if isinstance(value, dict):
            errors.append(f"{where}{path}: expected {_DESCRIPTIONS.get(_base(tp), 'a value')}, "
                          f"got a table")
            continue
        ok, converted = _convert(value, tp, from_text=False)
        if not ok:
            errors.append(f"{where}{path}: expected {_DESCRIPTIONS[_base(tp)]}, got {_shown(value, spec)}")
            continue
        if spec.metadata.get("path") and isinstance(converted, str):
            converted = _resolve_path(converted, base_dir)
        setattr(section, key, converted)


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
               dict: "a table"}


def _shown(value: Any, spec: dataclasses.Field[Any]) -> str:
    """``repr(value)`` for error messages, or only its kind for a setting that holds a secret."""
    if spec.metadata.get("secret"):
        kind = next((name for tp, name in _TYPE_NAMES.items() if type(value) is tp), "a value")
        return f"{kind} (not shown: it may hold a password)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _base(tp: Any) -> Any:
    args = typing.get_args(tp)
    return next((a for a in args if a is not type(None)), tp) if args else tp


def _apply_override(config: AgentConfig, dotted: str, value: Any, errors: list[str]) -> None:
    section: Any = config
    parts = dotted.split(".")
    for depth, key in enumerate(parts):
        fields = _settings(type(section))
        prefix = ".".join(parts[:depth])
        path = ".".join(parts[:depth + 1])
        if key not in fields:
            siblings = [f"{prefix}.{n}" if prefix else n for n in fields]
            errors.append(_unknown_key(path, siblings).replace("unknown key", "unknown setting", 1))
            return
        tp, spec = fields[key]
        if depth < len(parts) - 1:
            if not dataclasses.is_dataclass(tp):
                errors.append(f"unknown setting '{dotted}' ('{path}' is not a table)")
                return
            section = getattr(section, key)
            continue
        if dataclasses.is_dataclass(tp):
            errors.append(f"{dotted}: is a table; override its keys, e.g. '{dotted}.<key>'")
            return
        ok, converted = _convert(value, tp, from_text=True)
        if not ok:
            errors.append(f"{dotted}: expected {_DESCRIPTIONS[_base(tp)]}, got {_shown(value, spec)}")
            return
        setattr(section, key, converted)


def _read_file(path: str | os.PathLike[str], errors: list[str]) -> dict[str, Any]:
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        errors.append(f"{name}: config file not found (start from examples/edgebot.toml)")
    except IsADirectoryError:
        errors.append(f"{name}: is a directory, expected a TOML file")
    except OSError as exc:
        errors.append(f"{name}: cannot read the config file: {exc.strerror}")
    except tomllib.TOMLDecodeError as exc:
        errors.append(f"{name}: invalid TOML: {exc}")
    except UnicodeDecodeError:
        errors.append(f"{name}: not a UTF-8 text file")
    return {}


def _load(path: str | os.PathLike[str] | None, overrides: Mapping[str, Any] | None,
          errors: list[str]) -> tuple[AgentConfig, bool]:
    """Build the config, appending problems to ``errors``; returns (config, file_was_read)."""
    config = AgentConfig()
    read_ok = True
    if path is not None:
        name = os.fspath(path)
        n_before = len(errors)
        data = _read_file(name, errors)
        read_ok = len(errors) == n_before
        config.config_path = name
        base_dir = Path(name).expanduser().resolve().parent
        _apply_table(config, data, "", errors, f"{name}: ", base_dir)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if any(key in {f"source.{kind}" for kind in SourceConfig.KINDS} for key in overrides):
        # a source flag replaces the file's source; the sources' options (follow) stay
        source: Any = config.source
        config.source = dataclasses.replace(source, **{kind: None for kind in SourceConfig.KINDS})
    for dotted, value in overrides.items():
        _apply_override(config, dotted, value, errors)
    if config.bundle is None:  # neither the file nor --bundle: the bundle shipped in the package
        from edgebot.shipped import DEFAULT_BUNDLE

        if (DEFAULT_BUNDLE / "manifest.json").is_file():
            config.bundle = str(DEFAULT_BUNDLE)
    return config, read_ok


def load_config(path: str | os.PathLike[str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> AgentConfig:
    """Read the TOML file (if any), then apply command-line overrides.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The TOML file; None means defaults plus overrides only. Relative paths inside the
        file are taken relative to the file's directory.
    overrides : Mapping, optional
        Dotted keys to values, e.g. ``{"mqtt.url": "mqtt://broker", "source.pcap": "x.pcap"}``.
        None values are ignored (an unset CLI flag); text values are converted to the
        setting's type (``"60"`` -> 60). Overriding a source kind (``source.pcap``,
        ``source.iface``, ``source.zeek_log``, ``source.csv``) replaces the file's source.

    Returns
    -------
    AgentConfig
        Type-checked, but not validated: call ``validate()`` before running.

    Raises
    ------
    ConfigError
        Unreadable file, invalid TOML, unknown keys or wrong types; the message names the
        first problem and the key path, ``error.problems`` holds all of them.
    """
    errors: list[str] = []
    config, _ = _load(path, overrides, errors)
    if errors:
        raise config_error(errors)
    return config


def check_config(path: str | os.PathLike[str] | None,
                 overrides: Mapping[str, Any] | None = None) -> list[str]:
    """All problems of a configuration, for ``--check-config``; an empty list means it is fine.

    Beyond :meth:`AgentConfig.problems` (types, ranges, files, TLS files parsed with ``ssl``, a
    queue path that can be created), it checks the bundle as start-up does before loading the
    models: manifest integrity and fields, file hashes, featurizer, and the signature under
    ``trust_key``.
    """
    from edgebot.edge.config.checks import bundle_problems

    errors: list[str] = []
    config, read_ok = _load(path, overrides, errors)
    if not read_ok:  # the rest would only be noise about defaults
        return errors
    return errors + config.problems() + bundle_problems(config)
