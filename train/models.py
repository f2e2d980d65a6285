"""Keras builders of the networks (hybrid, ablations, autoencoder) and their training loop.

Every network takes a dynamic batch dimension, and every LSTM is built with ``unroll=True``:
that is the form that converts to full-int8 TFLite without Flex ops (measured; docs/training.md). Sizes are
kept small so that the int8 bundle (hybrid + autoencoder + fuser) stays well under 300 KB.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

import keras
from keras import layers

log = logging.getLogger(__name__)

#: Network names as they appear in the run dir and in metrics.json.
NETWORKS = ("cnn_lstm", "cnn", "lstm", "autoencoder")


def _head(x, dense: int, dropout: float, seed: int):
    x = layers.Dropout(dropout, seed=seed, name="dropout")(x)
    x = layers.Dense(dense, activation="relu", name="dense")(x)
    return layers.Dense(1, activation="sigmoid", name="prob")(x)


#: Max-pooling between the hybrid's Conv1D and LSTM along the feature axis (cicflowmeter profile):
#: 77 steps become 19, so the unrolled LSTM stays small (bundle size) and int8-accurate.
FEATURE_AXIS_POOL = 4


def build_cnn_lstm(window: int, n_features: int, *, filters: int = 32, kernel: int = 3, units: int = 32,
                   dense: int = 16, dropout: float = 0.2, pool: int = 1, seed: int = 0) -> keras.Model:
    """The hybrid: Conv1D over each step's features, then an unrolled LSTM over the steps.

    Input ``(None, T, F) float32`` scaled windows (``(None, F, 1)`` along the feature axis);
    output ``(None, 1)`` probability of malicious. ``pool > 1`` max-pools the convolution's
    output over the steps before the LSTM (used along the feature axis).
    """
    inputs = keras.Input(shape=(window, n_features), name="windows")
    x = layers.Conv1D(filters, kernel, padding="same", activation="relu", name="conv")(inputs)
    if pool > 1:
        x = layers.MaxPooling1D(pool, name="pool")(x)
    x = layers.LSTM(units, unroll=True, name="lstm")(x)
    return keras.Model(inputs, _head(x, dense, dropout, seed), name="cnn_lstm")


def build_cnn(window: int, n_features: int, *, filters: int = 32, kernel: int = 3, dense: int = 16,
              dropout: float = 0.2, seed: int = 0) -> keras.Model:
    """CNN-only ablation: two Conv1D layers and global max pooling over the steps.

    Input ``(None, T, F)``; output ``(None, 1)``.
    """
    inputs = keras.Input(shape=(window, n_features), name="windows")
    x = layers.Conv1D(filters, kernel, padding="same", activation="relu", name="conv")(inputs)
    x = layers.Conv1D(filters, kernel, padding="same", activation="relu", name="conv2")(x)
    x = layers.GlobalMaxPooling1D(name="pool")(x)
    return keras.Model(inputs, _head(x, dense, dropout, seed), name="cnn")


def build_lstm(window: int, n_features: int, *, units: int = 32, dense: int = 16, dropout: float = 0.2,
               seed: int = 0) -> keras.Model:
    """LSTM-only ablation: an unrolled LSTM straight over the scaled features.

    Input ``(None, T, F)``; output ``(None, 1)``.
    """
    inputs = keras.Input(shape=(window, n_features), name="windows")
    x = layers.LSTM(units, unroll=True, name="lstm")(inputs)
    return keras.Model(inputs, _head(x, dense, dropout, seed), name="lstm")


def build_autoencoder(n_features: int, *, hidden: int = 32, code: int = 8) -> keras.Model:
    """Dense autoencoder ``F -> hidden -> code -> hidden -> F`` with a sigmoid output.

    Input ``(None, F)`` scaled single flows (in [0, 1]); output ``(None, F)`` reconstruction.
    """
    inputs = keras.Input(shape=(n_features,), name="flows")
    x = layers.Dense(hidden, activation="relu", name="enc")(inputs)
    x = layers.Dense(code, activation="relu", name="code")(x)
    x = layers.Dense(hidden, activation="relu", name="dec")(x)
    outputs = layers.Dense(n_features, activation="sigmoid", name="recon")(x)
    return keras.Model(inputs, outputs, name="autoencoder")


def compile_classifier(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    """Adam + binary cross-entropy, tracking accuracy."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model


def compile_autoencoder(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    """Adam + mean squared error."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model


class _EpochBar(keras.callbacks.Callback):
    """One tqdm bar per network, one step per epoch, showing the losses."""

    def __init__(self, bar) -> None:
        super().__init__()
        self.bar = bar

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        logs = logs or {}
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if "loss" in k})
        self.bar.update(1)


def fit_network(model: keras.Model, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                y_val: np.ndarray, *, epochs: int, batch_size: int = 256, patience: int = 3,
                class_weight: Optional[dict] = None, progress: bool = True) -> dict[str, list[float]]:
    """Train with early stopping on validation loss (best weights restored).

    Parameters
    ----------
    model
        A compiled model.
    x_train, y_train, x_val, y_val
        Inputs and targets (``(n, T, F)`` windows and ``(n,)`` labels, or ``(n, F)`` flows and
        themselves for the autoencoder).
    epochs
        Upper bound on epochs.
    patience
        Epochs without a better validation loss before stopping.
    progress
        Show a progress bar (one step per epoch) on stderr.

    Returns
    -------
    dict
        Per-epoch history: ``loss``, ``val_loss`` and, for classifiers, ``accuracy``,
        ``val_accuracy``; plus ``best_epoch`` (1-based, a one-element list).
    """
    from tqdm.auto import tqdm

    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    with tqdm(total=epochs, desc=f"training {model.name}", unit="epoch", disable=not progress, leave=False) as bar:
        history = model.fit(
            x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=batch_size,
            shuffle=True, verbose=0, class_weight=class_weight, callbacks=[stop, _EpochBar(bar)],
        )
    out = {k: [float(v) for v in values] for k, values in history.history.items()}
    val_loss = out.get("val_loss", [])
    out["best_epoch"] = [int(np.argmin(val_loss)) + 1] if val_loss else [0]
    log.info("%s: %d epochs, best %d, val_loss %.4f", model.name, len(val_loss), out["best_epoch"][0],
             min(val_loss) if val_loss else float("nan"))
    return out


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    """Model outputs as float32, ``(n,)`` for classifiers and ``(n, F)`` for the autoencoder."""
    if len(x) == 0:
        shape = (0,) if model.output_shape[-1] == 1 else (0, model.output_shape[-1])
        return np.zeros(shape, dtype=np.float32)
    out = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)
    return out[:, 0] if out.shape[-1] == 1 and out.ndim == 2 else out
