"""Turning a fault inside the training loop into the one-line reason training ended.

A NaN loss (:class:`~napari_unet.engine.errors.TrainingStopped`), running out of
memory, a full disk while saving (:class:`~napari_unet.engine.errors.UserInputError`)
or any other error ends training with a readable message; for unexpected errors
the traceback goes to ``train-error.log`` in the model folder.
"""

from __future__ import annotations

from ..errors import TrainingStopped, UserInputError
from ..model.model_folder import ModelFolder

__all__ = ["fault_reason"]

#: The reason given when TensorFlow runs out of (GPU or host) memory.
OUT_OF_MEMORY = "out of memory: lower the batch size or the patch size"


def fault_reason(exc: Exception, step: int, folder: ModelFolder) -> str:
    """Why training ended, for an exception raised inside the training loop.

    Parameters
    ----------
    exc
        The exception.
    step
        Batches trained before it.
    folder
        The model folder (for ``train-error.log`` and to tell whether a
        checkpoint is kept).

    Returns
    -------
    str
        One line: the message of a :class:`TrainingStopped` or
        :class:`UserInputError`, the out-of-memory advice, or
        :func:`_fault_message` for anything else.
    """
    import tensorflow as tf

    if isinstance(exc, TrainingStopped):
        return str(exc)
    if isinstance(exc, tf.errors.ResourceExhaustedError):
        return OUT_OF_MEMORY
    if isinstance(exc, UserInputError):  # e.g. the disk filled up while saving a checkpoint
        return str(exc)
    return _fault_message(exc, step, folder)  # any other fault: traceback in the folder


def _fault_message(exc: Exception, step: int, folder: ModelFolder) -> str:
    """One line for an unexpected error inside the training loop; the traceback
    goes to ``train-error.log`` in the model folder (never to the user's screen)."""
    import traceback

    from ..atomic import atomic_write_text

    where = ""
    try:
        log = folder.path / "train-error.log"
        atomic_write_text(log, "".join(traceback.format_exception(exc)))
        where = f" (details in {log})"
    except (UserInputError, OSError):
        pass
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    kept = "no checkpoint yet"
    if folder.best_path.exists():
        kept = "the best checkpoint so far is kept"
    return f"training failed after {step} steps: {reason}; {kept}{where}"
