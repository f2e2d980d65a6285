"""Desktop trainer: models, splits, metrics and the report (imports TensorFlow lazily)."""

from __future__ import annotations

from edgebot.train.fit import MODEL_NAMES, TrainConfig, train_run
from edgebot.train.report import format_summary

__all__ = ["MODEL_NAMES", "TrainConfig", "format_summary", "train_run"]
