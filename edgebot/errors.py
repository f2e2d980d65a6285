"""The project's own error classes; the CLI turns them into one-line messages."""

from __future__ import annotations


class EdgebotError(Exception):
    """Base class of every error edgebot raises on purpose.

    ``exit_code`` is what the CLI exits with (2: bad input or usage, 1: a check failed).
    """

    exit_code = 2


class DataFormatError(EdgebotError):
    """A file is not in a format we read, or a row is malformed under ``--strict``."""


class DataError(EdgebotError):
    """The data were read but cannot serve the requested job (one class, too few flows...)."""


class BundleError(EdgebotError):
    """A model bundle is missing, tampered with, or does not match this edgebot."""


class ConfigError(EdgebotError):
    """A configuration file or option is wrong; the message names the key path."""


class RuntimeMissingError(EdgebotError):
    """An optional dependency (interpreter, TensorFlow...) is not installed."""


class SourceError(EdgebotError):
    """A traffic source (pcap, interface, log) cannot be opened or read."""


class SinkError(EdgebotError):
    """An alert sink (MQTT, file) is misconfigured or refused us."""


class CheckFailed(EdgebotError):
    """A verification did not pass (e.g. int8 F1 dropped too far)."""

    exit_code = 1
