"""The default bundle shipped in the package (``edgebot/default_bundle/``, built by ``make bundle``).

``edgebot run`` and ``edgebot eval`` use it when no ``--bundle`` (or ``bundle =`` in the config)
is given. It is trained on the repository's default training set
(:func:`edgebot.datasets.default_training`) with the full configuration and fixed seeds; its
manifest records the training files' sha256 and the command, ``docs/model-card.md`` its figures.

``python -m edgebot.shipped --training-files`` prints the training files relative to the working
directory, one argument each (what the Makefile passes to ``edgebot train``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from edgebot.errors import BundleError

#: Where the shipped bundle lives inside the package.
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "default_bundle"
#: The split, seed and window it is trained with (the Makefile's ``bundle`` target).
TRAIN_ARGS = ("--split", "temporal", "--seed", "0", "--window", "8")


def default_bundle() -> Path:
    """The shipped bundle's directory.

    Raises
    ------
    BundleError
        This installation carries no default bundle (a checkout where ``make bundle`` was never run).
    """
    if not (DEFAULT_BUNDLE / "manifest.json").is_file():
        raise BundleError(f"this edgebot ships no default bundle ({DEFAULT_BUNDLE.name}/ is missing): "
                          "give --bundle, or build it with `make bundle`")
    return DEFAULT_BUNDLE


def is_default(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is the shipped bundle."""
    try:
        return Path(path).resolve() == DEFAULT_BUNDLE
    except OSError:
        return False


def training_files_relative() -> list[str]:
    """The default training set's files, relative to the working directory when below it."""
    from edgebot import datasets

    cwd = Path.cwd()
    out = []
    for p in datasets.default_training():
        try:
            out.append(str(p.relative_to(cwd)))
        except ValueError:
            out.append(str(p))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--training-files"]:
        print(" ".join(training_files_relative()))
        return 0
    if args == ["--train-args"]:
        print(" ".join(TRAIN_ARGS))
        return 0
    print("usage: python -m edgebot.shipped --training-files | --train-args", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
