"""Desktop trainer: models, splits, metrics and the report (imports TensorFlow lazily)."""
