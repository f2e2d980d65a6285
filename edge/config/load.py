"""Reading the agent's TOML file and command-line overrides into :data:`AgentConfig`.

Every error names its key path (``edgebot.toml: mqtt.keepalive: expected an integer, got 'abc'``),
unknown keys get a "did you mean" from the schema's own key paths, and all problems are collected
(``--check-config`` lists them). Precedence, highest first: command-line overrides, the config
file, the defaults of the schema.

The structuring and coercion are msgspec's (``msgspec.convert`` into Structs that mirror the section
dataclasses, strict for the file, text parsed for overrides); the messages are the loader's.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Union

from edgebot.edge.config.schema import AgentConfig, SourceConfig
from edgebot.errors import ConfigError, RuntimeMissingError

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


@functools.lru_cache(maxsize=None)
def _settings(cls: Any) -> dict[str, tuple[Any, dataclasses.Field[Any]]]:
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


# -- structuring and coercion: msgspec ------------------------------------------------------
# msgspec reads the TOML tables into Structs that mirror the section dataclasses (every field
# UNSET unless given, unknown keys refused, floats finite); the sections are then built from what
# was given. msgspec stops at its first error: the loader turns it into a key-path message, drops
# the offending key and converts again, so that every problem is collected in file order.
_WIRE_PATH = re.compile(r"\$(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


@functools.lru_cache(maxsize=None)
def _msgspec() -> Any:
    """msgspec, imported when a config is first loaded (the schema's classes do without it)."""
    try:
        import msgspec
    except ModuleNotFoundError as exc:
        raise RuntimeMissingError(f"reading the config needs {exc.name}, which is not installed; "
                                  "pip install 'edgebot[edge]'") from exc
    return msgspec


@functools.lru_cache(maxsize=None)
def _finite() -> Any:
    """``Annotated[float, Meta(...)]``: a float that is not nan or +-inf."""
    return Annotated[float, _msgspec().Meta(ge=-sys.float_info.max, le=sys.float_info.max)]


@functools.lru_cache(maxsize=None)
def _wire(cls: type) -> Any:
    """The msgspec Struct that mirrors a section dataclass (its settable fields, each UNSET unless given)."""
    msgspec = _msgspec()
    fields = [(name, _wire_type(tp), msgspec.UNSET) for name, (tp, _) in _settings(cls).items()]
    return msgspec.defstruct(f"{cls.__name__}Wire", fields, forbid_unknown_fields=True, module=__name__)


def _wire_type(tp: Any) -> Any:
    """The type msgspec converts a setting to: a section's Struct, floats finite, the rest as declared."""
    if dataclasses.is_dataclass(tp):
        return _wire(tp)  # type: ignore[arg-type]
    if tp is float:
        return _finite()
    if typing.get_origin(tp) in (Union, types.UnionType):
        return Union[tuple(_wire_type(a) for a in typing.get_args(tp))]
    return tp


def _build(cls: type, given: Any, base_dir: Path | None) -> Any:
    """A section dataclass from its converted Struct: the values given, the dataclass's defaults for the rest."""
    values: dict[str, Any] = {}
    unset = _msgspec().UNSET
    for name, (tp, spec) in _settings(cls).items():
        value = getattr(given, name)
        if value is unset:
            continue
        if dataclasses.is_dataclass(tp):
            value = _build(tp, value, base_dir)  # type: ignore[arg-type]
        elif spec.metadata.get("path") and isinstance(value, str):
            value = _resolve_path(value, base_dir)
        values[name] = value
    return cls(**values)


def _structure(data: dict[str, Any], where: str, base_dir: Path | None, errors: list[str]) -> AgentConfig:
    """The config a TOML document describes; each problem is appended to ``errors`` and its key ignored."""
    msgspec, wire = _msgspec(), _wire(AgentConfig)
    while True:  # ends: each pass that fails drops a key of the document, or gives up
        try:
            return _build(AgentConfig, msgspec.convert(data, wire, strict=True), base_dir)
        except msgspec.ValidationError as exc:
            problem, dropped = _problem(str(exc), data)
            errors.append(where + problem)
            if not dropped:  # not located in the document: the defaults only
                return AgentConfig()


def _problem(message: str, data: dict[str, Any]) -> tuple[str, bool]:
    """msgspec's first error as ``mqtt.keepalive: expected an integer, got 'abc'``; drops the key from ``data``.

    Only the location (``- at `$.mqtt.keepalive```), the kind of error and the name of an unknown key
    are read from msgspec's message; the value and the expected type are taken from the document
    and the schema.
    Returns the message and whether a key was dropped.
    """
    head, sep, at = message.rpartition(" - at `")
    if not (sep and _WIRE_PATH.fullmatch(at[:-1])):
        head, at = message, "$`"
    keys = at[:-1].split(".")[1:]
    if head.startswith("Object contains unknown field"):
        # the table holding the key: the one whose unknown key msgspec's message names exactly
        # (a key may itself be named like a location), else the first table with an unknown key
        extra = [(where, key) for where in (keys, []) for key in _unknown_keys(where, data)]
        named = [(where, key) for where, key in extra if message == f"Object contains unknown field `{key}`"
                 + (f" - at `${''.join('.' + k for k in where)}`" if where else "")]
        if not (named or extra):
            return f"{message} (in the config file)", False
        where, key = (named or extra)[0]
        cls, table = _table_at(where, data)  # type: ignore[misc]
        prefix = "".join(k + "." for k in where)
        del table[key]
        return _unknown_key(prefix + key, [prefix + name for name in _settings(cls)]), True
    found = _table_at(keys[:-1], data)
    if found is None or not keys or keys[-1] not in found[1]:
        return f"{message} (in the config file)", False  # not located: cannot happen with the wire types
    cls, table = found
    path = ".".join(keys)
    value = table.pop(keys[-1])
    tp, spec = _settings(cls)[keys[-1]]
    if dataclasses.is_dataclass(tp):
        return f"{path}: expected a table ([{path}]), got {value!r}", True
    if isinstance(value, dict):
        return f"{path}: expected {_described(tp)}, got a table", True
    return f"{path}: expected {_described(tp)}, got {_shown(value, spec)}", True


def _unknown_keys(keys: list[str], data: dict[str, Any]) -> list[str]:
    """The keys of the document's table at ``keys`` that its section does not have."""
    found = _table_at(keys, data)
    return [] if found is None else [k for k in found[1] if k not in _settings(found[0])]


def _table_at(keys: list[str], data: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    """The section dataclass and the document's table at ``keys`` (``["mqtt"]``), if both exist."""
    cls: Any = AgentConfig
    table = data
    for key in keys:
        tp = _settings(cls).get(key, (None,))[0]
        if not (dataclasses.is_dataclass(tp) and isinstance(table.get(key), dict)):
            return None
        cls, table = tp, table[key]
    return cls, table


def _coerced(value: Any, tp: Any) -> tuple[bool, Any]:
    """A command-line value as the setting's type: text is parsed (``"60"`` -> 60, ``"true"`` -> True,
    ``"null"`` -> None for an optional number), other values must have the type already."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    text = isinstance(value, str)
    if text and _base(tp) is not str:
        value = value.strip()
    msgspec = _msgspec()
    try:
        return True, msgspec.convert(value, _wire_type(tp), strict=not text)
    except msgspec.ValidationError:
        return False, value


def _resolve_path(value: str, base_dir: Path | None) -> str:
    if value == "-" or base_dir is None:
        return value
    expanded = Path(os.path.expanduser(value))  # leaves an unknown ~user as it is (Path.expanduser raises)
    return str(expanded if expanded.is_absolute() else base_dir / expanded)


_DESCRIPTIONS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
               dict: "a table"}


def _described(tp: Any) -> str:
    """``an integer`` for ``int`` or ``Optional[int]``."""
    return _DESCRIPTIONS.get(_base(tp), f"a value of type {_base(tp)}")


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
        cls: Any = type(section)
        fields = _settings(cls)
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
        ok, converted = _coerced(value, tp)
        if not ok:
            errors.append(f"{dotted}: expected {_described(tp)}, got {_shown(value, spec)}")
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
    read_ok = True
    if path is None:
        config = AgentConfig()
    else:
        name = os.fspath(path)
        n_before = len(errors)
        data = _read_file(name, errors)
        read_ok = len(errors) == n_before
        base_dir = Path(name).expanduser().resolve().parent
        config = _structure(data, f"{name}: ", base_dir, errors)
        config.config_path = name
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
        setting's type by msgspec's lax rules (``"60"`` -> 60, ``"0.75"`` -> 0.75, ``"true"``/``"1"``
        -> True, ``"null"`` -> None for an optional number; surrounding blanks ignored), other
        values must have the setting's type (an int is taken for a float). Overriding a source
        kind (``source.pcap``, ``source.iface``, ``source.zeek_log``, ``source.csv``) replaces the
        file's source.

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
