"""The one exception type that means "the user gave us something we cannot use"."""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad input from the user: a missing or unreadable file, a wrong shape,
    a mismatch between images and masks, an empty set.

    The CLI prints its message as one line on stderr and exits with code 2;
    the widgets show it as a napari notification. It never carries a traceback
    to the user.
    """


class TrainingStopped(RuntimeError):
    """Raised inside the training loop when a fault (NaN loss, out of memory)
    ends training; the message says why and the best checkpoint is kept."""


class StopRequested(Exception):
    """Raised between the phases of a long job (e.g. data preparation) when its stop
    event is set; the job catches it and ends cleanly, as after a stop in its loop."""
