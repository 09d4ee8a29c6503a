"""nlighten_tf.interrupts, with real signals sent to a fresh Python process (pytest's own
signal handling stays out of it): inside `deferred()` a signal is recorded and honoured at
the next safe point; a second one interrupts at once."""

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PRELUDE = """
import os, signal, time
from nlighten_tf import interrupts

def kill_and_wait(signum):
    # Process-directed, like Ctrl-C; then wait for the handler to have recorded it.
    os.kill(os.getpid(), signum)
    deadline = time.time() + 30
    while not interrupts._requested:
        assert time.time() < deadline, "the handler never ran"
        time.sleep(0.01)
"""


def run(body: str) -> subprocess.CompletedProcess:
    script = PRELUDE + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_the_first_signal_is_recorded_and_raised_at_the_next_check():
    result = run("""
        reached = []
        try:
            with interrupts.deferred():
                kill_and_wait(signal.SIGINT)
                reached.append("after the signal")  # not interrupted here
                interrupts.raise_if_requested()
                reached.append("after the check")
        except KeyboardInterrupt:
            reached.append("KeyboardInterrupt")
        interrupts.raise_if_requested()  # the request ended with the block
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "handler not restored"
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "handler not restored"
        print(reached)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['after the signal', 'KeyboardInterrupt']"
    assert "SIGINT: stopping at the next batch" in result.stderr


def test_a_second_signal_interrupts_at_once_and_sigterm_is_taken_too():
    result = run("""
        reached = []
        try:
            with interrupts.deferred():
                kill_and_wait(signal.SIGTERM)
                reached.append("after SIGTERM")
                os.kill(os.getpid(), signal.SIGINT)
                deadline = time.time() + 30
                while time.time() < deadline:  # interrupted in here, without any check
                    time.sleep(0.01)
                reached.append("not interrupted")
        except KeyboardInterrupt:
            reached.append("KeyboardInterrupt")
        print(reached)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['after SIGTERM', 'KeyboardInterrupt']"
    assert "SIGTERM: stopping at the next batch" in result.stderr


def test_fit_stops_at_the_end_of_the_batch_after_the_signal():
    result = run("""
        with interrupts.deferred():
            import numpy as np
            import tensorflow as tf
            import tf_keras
            from nlighten_tf.optimize import training

            batches = []

            class SignalAtSecondBatch(tf_keras.callbacks.Callback):
                def on_train_batch_begin(self, batch, logs=None):
                    batches.append(batch)
                    if len(batches) == 2:
                        kill_and_wait(signal.SIGINT)

            model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3)])
            data = tf.data.Dataset.from_tensor_slices((np.zeros((64, 4), np.float32), np.zeros(64, np.int64)))
            try:
                training.fit(model, data.batch(8), training.TrainConfig(epochs=2.0, verbose=0),
                             callbacks=[SignalAtSecondBatch()])
            except KeyboardInterrupt:
                print("interrupted after batches", batches)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "interrupted after batches [0, 1]" in result.stdout  # the second batch finished; no third began
