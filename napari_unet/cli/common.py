"""What every command shares: exit codes, the parser class and how a command runs.

:func:`run_command` imports TensorFlow quietly for the commands that need it and
turns every failure into one line on stderr: a user error exits with code 2,
Ctrl-C with 130, a fault (out of memory, an unexpected error) with 1.
:func:`stop_on_interrupt` lets a long command (training) stop cleanly on the first
Ctrl-C and abort on the second. This module imports no TensorFlow itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from ..engine.errors import UserInputError

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = [
    "EXIT_FAULT",
    "EXIT_INTERRUPTED",
    "EXIT_USER_ERROR",
    "UNSAFE_HELP",
    "CommandHandler",
    "Interrupt",
    "Parser",
    "import_tensorflow_quietly",
    "run_command",
    "stop_on_interrupt",
]

#: A user error (bad input, bad option): one line on stderr.
EXIT_USER_ERROR = 2
#: ``time.perf_counter()`` when the CLI started (budgets like ``finetune --max-minutes``
#: count from here, TensorFlow's import included).
PROCESS_STARTED = time.perf_counter()
#: A fault (NaN loss, out of memory, an unexpected error) ended the command.
EXIT_FAULT = 1
#: Ctrl-C ended the command (the shell's 128 + SIGINT).
EXIT_INTERRUPTED = 130

#: Help text of ``--unsafe-load``.
UNSAFE_HELP = "load a model that contains custom code (Lambda layers); only for models you trust"

#: A command's handler: parsed arguments in, exit code out.
CommandHandler = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print `message` as one line and exit with :data:`EXIT_USER_ERROR`.

        Parameters
        ----------
        message : str
            argparse's description of the usage error.
        """
        self.exit(EXIT_USER_ERROR, f"napari-unet: error: {message} (see --help)\n")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its start-up chatter kept off the terminal."""
    from ..engine.model.tf_import import import_tensorflow_quietly as _import

    _import()


def run_command(
    handler: CommandHandler, args: argparse.Namespace, needs_tensorflow: bool = False
) -> int:
    """Run one command and turn any failure into one line on stderr.

    Parameters
    ----------
    handler : callable
        The command's ``run(args) -> int``.
    args : argparse.Namespace
        The parsed command line.
    needs_tensorflow : bool
        Import TensorFlow (quietly) before running the command.

    Returns
    -------
    int
        The handler's exit code, or :data:`EXIT_USER_ERROR`, :data:`EXIT_INTERRUPTED`
        or :data:`EXIT_FAULT` when it failed. With ``NAPARI_UNET_DEBUG`` set an
        unexpected error is re-raised with its traceback.
    """
    try:
        if needs_tensorflow:
            import_tensorflow_quietly()
        return handler(args)
    except UserInputError as exc:
        message = " ".join(str(exc).split())  # always one line
        print(f"napari-unet: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("napari-unet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print("napari-unet: error: out of memory; use smaller tiles or batches", file=sys.stderr)
        return EXIT_FAULT
    except Exception as exc:  # a bug or an environment fault: one line, no traceback
        if ABORTED.is_set():
            # the second Ctrl-C's KeyboardInterrupt surfaced wrapped in another error
            # (raised inside a library call that converts it): still the user's abort
            print("napari-unet: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        if os.environ.get("NAPARI_UNET_DEBUG"):
            raise
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        print(
            f"napari-unet: error: unexpected {type(exc).__name__}: {text} "
            "(set NAPARI_UNET_DEBUG=1 to see the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAULT


#: Set when a second Ctrl-C aborted the command (see :func:`stop_on_interrupt`).
ABORTED = threading.Event()


@dataclass
class Interrupt:
    """The stop request of a command run under :func:`stop_on_interrupt`.

    Attributes
    ----------
    event : threading.Event
        Set by the first Ctrl-C; hand it to the engine as its ``stop`` event.
    """

    event: threading.Event = field(default_factory=threading.Event)

    @property
    def requested(self) -> bool:
        """True once Ctrl-C asked the command to stop."""
        return self.event.is_set()


#: What the first Ctrl-C prints (written with ``os.write``: safe inside a signal handler).
STOPPING_NOTE = (
    b"\nnapari-unet: stopping after the current batch and saving the model "
    b"(press Ctrl-C again to abort)\n"
)


@contextlib.contextmanager
def stop_on_interrupt() -> Iterator[Interrupt]:
    """While inside, the first Ctrl-C (SIGINT) sets the yielded stop event instead of
    raising; a second one raises :class:`KeyboardInterrupt` (abort, exit code 130).

    The engine honours the event within one batch (data preparation and model
    building skip what is left) and still writes a loadable model; the command
    then returns :data:`EXIT_INTERRUPTED`. Outside the main thread (where Python
    delivers signals) the event is yielded without a handler.

    Yields
    ------
    Interrupt
        The stop request.
    """
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return

    ABORTED.clear()

    def handle(signum: int, frame: object) -> None:
        if interrupt.event.is_set():
            ABORTED.set()
            raise KeyboardInterrupt
        interrupt.event.set()
        with contextlib.suppress(OSError):
            os.write(2, STOPPING_NOTE)

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGINT, previous)
