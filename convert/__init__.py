"""Converter: Keras run dir to a verified int8 TFLite bundle."""
