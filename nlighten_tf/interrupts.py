"""Ctrl-C and SIGTERM that stop a run at a safe point.

By default Python raises KeyboardInterrupt at whatever bytecode the main thread runs when
SIGINT arrives. Inside TensorFlow's tracing (a tf.function's first call: the first batch of
`fit` or `evaluate`) that corrupts TensorFlow's own bookkeeping. Measured on this project's
machine (2026-11-30, SIGINT at a prune stage's "Epoch 1/10" line, under load): 2 interrupts in
19 ended in ``AssertionError: Concurrent access?`` from ``tensorflow/python/util/tf_stack.py``
(exit 1 with a traceback instead of 130), and one full test-suite run in four had a run not
exit within 120 s of the signal: an exception torn through TensorFlow's internals is the
likely cause of both.

So while `deferred()` is active, the first SIGINT or SIGTERM only records the request and says
so on stderr; training, evaluation and the recipe runner call `raise_if_requested()` at their
next batch or stage boundary, where TensorFlow's state is consistent, and the
KeyboardInterrupt starts there. A second signal raises at once: the user insists.

A leaf module: it imports nothing from the package (and not TensorFlow).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requested = False  # a signal arrived and has not been honoured yet
_received = False  # a signal arrived since the block began (a second one raises at once)


def _record(signum: int, frame: object) -> None:
    global _requested, _received
    if _received:
        raise KeyboardInterrupt
    _requested = _received = True
    # os.write, not print: the handler runs between two bytecodes of the main thread, which
    # may be inside a print of its own ("reentrant call").
    os.write(2, f"\n{signal.Signals(signum).name}: stopping at the next batch (again to stop at once)\n".encode())


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM are honoured at the next `raise_if_requested()`.

    A request still pending when the block ends raises KeyboardInterrupt there. Outside the
    main thread (where Python cannot install handlers) the block changes nothing.
    """
    global _requested, _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in SIGNALS}
    _requested = _received = False
    for number in SIGNALS:
        signal.signal(number, _record)
    try:
        yield
        raise_if_requested()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _requested = _received = False


def raise_if_requested() -> None:
    """Raises KeyboardInterrupt if SIGINT or SIGTERM arrived since `deferred()` began and has not
    been honoured yet (a request raises once)."""
    global _requested
    if _requested:
        _requested = False
        raise KeyboardInterrupt
