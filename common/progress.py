"""The training output of every task: one line of our own per epoch, in the style of `runner.say`.

    rsic: epoch 3/12  41 s  loss 0.512  val_accuracy 0.731

The line names the epoch (counted over the whole run, so a resumed run goes on counting), its
wall time, the training loss and the score that chooses the epoch (`train.monitor`). On a terminal
an epoch that has run longer than `BAR_AFTER_S` also shows a one-line progress bar, redrawn at
most once a second and erased before the epoch's line; output to a file or a pipe never has one.
Keras' own output (a bar per batch) is `train.verbose: 1`, which `--verbose` sets.
"""

import sys
import time

import tf_keras as keras

BAR_AFTER_S = 30.0  # an epoch shorter than this shows no progress bar
BAR_EVERY_S = 1.0
BAR_WIDTH = 24


def epoch_line(task_name, epoch, epochs, seconds, logs, monitor):
    """`TASK: epoch E/N  T s  loss L  MONITOR V` (epoch counted from 1; `logs` as Keras gives)."""
    logs = logs or {}
    parts = [f"{task_name}: epoch {epoch}/{epochs}", f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"]
    for key in dict.fromkeys(["loss", monitor]):
        if key in logs:
            parts.append(f"{key} {float(logs[key]):.3f}")
    return "  ".join(parts)


class EpochLog(keras.callbacks.Callback):
    """Prints `epoch_line` at the end of every epoch (and a progress bar, see the module doc).

    Args:
        task_name: the prefix of every line.
        epochs: the run's number of epochs (`train.epochs`).
        monitor: the logged score shown beside the loss (`train.monitor`).
        stream: where to write (default sys.stdout, looked up when training starts).
        bar: draw the progress bar (default: `stream` is a terminal and Keras prints nothing).
    """

    def __init__(self, task_name, epochs, monitor, *, stream=None, bar=None):
        super().__init__()
        self.task_name, self.epochs, self.monitor = task_name, int(epochs), monitor
        self._stream, self._bar = stream, bar
        self._bar_shown = False

    def on_train_begin(self, logs=None):
        self.stream = self._stream or sys.stdout
        if self._bar is None:
            interactive = getattr(self.stream, "isatty", lambda: False)()
            self._bar = bool(interactive) and not self.params.get("verbose")

    def on_epoch_begin(self, epoch, logs=None):
        self._started = self._drawn = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if not self._bar:
            return
        now = time.perf_counter()
        if now - self._started < BAR_AFTER_S or now - self._drawn < BAR_EVERY_S:
            return
        self._drawn, self._bar_shown = now, True
        steps = self.params.get("steps")
        done = batch + 1
        if steps:
            filled = int(BAR_WIDTH * min(done, steps) / steps)
            where = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{steps}"
        else:
            where = f"batch {done}"
        self.stream.write(f"\r{self.task_name}: {where}  {now - self._started:.0f} s ")
        self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        if self._bar_shown:  # erase the bar: the epoch's line replaces it
            self.stream.write("\r\033[K")
            self._bar_shown = False
        seconds = time.perf_counter() - self._started
        self.stream.write(epoch_line(self.task_name, epoch + 1, self.epochs, seconds, logs, self.monitor) + "\n")
        self.stream.flush()
