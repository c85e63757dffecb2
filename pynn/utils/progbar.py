"""Keras-style progress display drawn with tqdm.

verbose=1 (a per-step bar, redrawn at most every ``interval`` seconds on a terminal)::

    1875/1875 [==============================] - 3s 2ms/step - loss: 0.2345 - accuracy: 0.9312

verbose=2 (one line when the epoch ends)::

    1875/1875 - 3s - 2ms/step - loss: 0.2345 - accuracy: 0.9312

When stdout is not a terminal (CI logs, files, pipes) nothing is redrawn: verbose=1 prints only
the final line, so a log gets one line per epoch instead of one per refresh.
"""
import math
import os
import sys
import time


def _tqdm():
    """tqdm, imported on first use: it costs ~20 ms, more than the rest of `import pynn`."""
    from tqdm import tqdm

    return tqdm


BAR_WIDTH = 30       # Keras 2's bar; narrowed (down to MIN_BAR_WIDTH) to fit the terminal
MIN_BAR_WIDTH = 10
# tqdm's charset: blank, partial cell(s), full cell -> "[=====>........]" like Keras.
BAR_CHARSET = ".>="


def format_value(value):
    """Keras' number format: 4 decimals, scientific notation for tiny magnitudes."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if abs(value) > 1e-3 or value == 0 or not math.isfinite(value):
        return f"{value:.4f}"
    return f"{value:.4e}"


def format_metrics(values):
    """``" - loss: 0.2345 - accuracy: 0.9312"`` for ``[(name, value), ...]``."""
    return "".join(f" - {name}: {format_value(value)}" for name, value in values)


def format_step_time(seconds_per_step, unit_name="step"):
    """``"2ms/step"``: the duration of one step in s, ms or us, as Keras prints it."""
    if seconds_per_step >= 1 or seconds_per_step == 0:
        return f"{seconds_per_step:.0f}s/{unit_name}"
    if seconds_per_step >= 1e-3:
        return f"{seconds_per_step * 1e3:.0f}ms/{unit_name}"
    return f"{seconds_per_step * 1e6:.0f}us/{unit_name}"


def format_eta(seconds):
    seconds = max(0, int(seconds))
    if seconds > 3600:
        return "%d:%02d:%02d" % (seconds // 3600, (seconds % 3600) // 60, seconds % 60)
    if seconds > 60:
        return "%d:%02d" % (seconds // 60, seconds % 60)
    return f"{seconds}s"


def _is_interactive(stream):
    """True when ``stream`` is a terminal (or a notebook) that can redraw a line in place."""
    if os.environ.get("PYNN_PROGBAR_DYNAMIC", "").lower() in ("1", "true", "yes"):
        return True
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):
        return False
    return "ipykernel" in sys.modules and stream is getattr(sys, "stdout", None)


def _line_width():
    """Columns available for the bar line (one less than the terminal, so it never wraps).

    shutil falls back to 80 when the terminal reports no size (e.g. a pseudo-terminal 0x0).
    """
    import shutil  # on first draw: it pulls in bz2/lzma/zlib, ~5 ms of import pynn

    return max(20, shutil.get_terminal_size().columns - 1)


def _rows():
    # tqdm hides bars below the last row; a terminal reporting 0 rows would hide them all.
    import shutil

    return max(2, shutil.get_terminal_size().lines)


class Progbar:
    """A Keras ``Progbar`` (``keras.utils.Progbar``) drawn with tqdm.

    target: total number of steps, or None when unknown. verbose: 0 silent, 1 bar, 2 one line
    at the end. interval: minimum seconds between redraws. stateful_metrics: names shown as
    given; the others are averaged over the steps, weighted by step count (Keras).
    ``show_as_given=True`` shows every value as given (``fit``'s logs are running means
    already). file: the stream (default: sys.stdout at construction).
    """

    def __init__(self, target, width=BAR_WIDTH, verbose=1, interval=0.1, stateful_metrics=None,
                 unit_name="step", file=None, show_as_given=False, dynamic=None):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self.stateful_metrics = set(stateful_metrics or ())
        self.show_as_given = show_as_given
        self.file = file if file is not None else sys.stdout
        self.dynamic = _is_interactive(self.file) if dynamic is None else dynamic
        self._values = {}          # name -> [sum of value * steps, steps] or [value, 1]
        self._order = []
        self._seen = 0
        self._start = time.monotonic()
        self._time_after_first_step = None
        self._last_draw = 0.0
        self._bar = None
        self._finished = False

    # --- bookkeeping ----------------------------------------------------------------------------
    def _record(self, current, values, finalize):
        for name, value in values or ():
            if name not in self._values:
                self._order.append(name)
            if (self.show_as_given or name in self.stateful_metrics or finalize):
                self._values[name] = [value, 1]
            else:
                steps = max(current - self._seen, 1)
                entry = self._values.setdefault(name, [0.0, 0])
                entry[0] += value * steps
                entry[1] += steps
        if current == 1 and self._time_after_first_step is None:
            self._time_after_first_step = time.monotonic()
        self._seen = current

    def _averages(self):
        out = []
        for name in self._order:
            total, count = self._values[name]
            try:
                out.append((name, total / max(count, 1)))
            except TypeError:
                out.append((name, total))
        return out

    def _step_duration(self, current, now):
        """Seconds per step, ignoring the (unrepresentative) first step when possible."""
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            return (now - self._time_after_first_step) / (current - 1)
        return (now - self._start) / current

    # --- drawing --------------------------------------------------------------------------------
    def _bar_format(self, current, now, finalize, bar_width):
        """tqdm's bar_format for this state: tqdm draws the count and the bar, the Keras fields
        (ETA or elapsed and time per step, metrics) are literal text."""
        per_step = self._step_duration(current, now)
        if self.target and not finalize:
            info = f" - ETA: {format_eta(per_step * (self.target - current))}"
        else:
            info = f" - {now - self._start:.0f}s {format_step_time(per_step, self.unit_name)}"
        info = (info + format_metrics(self._averages())).replace("{", "{{").replace("}", "}}")
        if not self.target:
            return "{n_fmt}/Unknown" + info
        return "{n_fmt}/{total_fmt} [{bar:%d}]" % bar_width + info

    def _line(self, current, now, finalize):
        """The verbose=1 line printed once (final line, or every line when not a terminal)."""
        return _tqdm().format_meter(n=current, total=self.target or None,
                                 elapsed=now - self._start, ascii=BAR_CHARSET,
                                 bar_format=self._bar_format(current, now, finalize, self.width))

    def _draw(self, current, now, finalize):
        """Redraw the live line in place (terminal), or end it with the full final line."""
        if finalize:
            if self._bar is not None:
                # Clear the live line; the final one is printed in full and may wrap, unlike
                # the live line, which must fit the terminal to be redrawn in place.
                self._bar.leave = False
                self._bar.close()
                self._bar = None
            print(self._line(current, now, True), file=self.file, flush=True)
            return
        columns = _line_width()
        # Narrow the bar so the whole line fits (it is trimmed beyond that).
        full = len(self._line(current, now, False))
        bar_width = max(MIN_BAR_WIDTH, min(self.width, self.width - (full - columns)))
        bar_format = self._bar_format(current, now, False, bar_width)
        if self._bar is None:
            self._bar = _tqdm()(total=self.target or None, initial=current, file=self.file,
                             ascii=BAR_CHARSET, bar_format=bar_format, leave=True,
                             ncols=columns, nrows=_rows(), mininterval=self.interval)
            return
        self._bar.bar_format = bar_format
        self._bar.ncols = columns
        self._bar.n = current
        self._bar.refresh()

    def update(self, current, values=None, finalize=None):
        """Record step ``current`` (1-based) with ``values = [(name, value), ...]``.

        finalize: last update of this bar (default: ``current >= target``).
        """
        if self._finished:
            return
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        self._record(current, values, finalize)
        if self.verbose == 0:
            return
        now = time.monotonic()
        if self.verbose == 1:
            if self.dynamic:
                if finalize or now - self._last_draw >= self.interval:
                    self._draw(current, now, finalize)
                    self._last_draw = now
            elif finalize:
                print(self._line(current, now, True), file=self.file, flush=True)
        elif self.verbose == 2 and finalize:
            count = (f"{current:{len(str(self.target))}d}/{self.target}" if self.target
                     else f"{current}/Unknown")
            per_step = format_step_time(self._step_duration(current, now), self.unit_name)
            print(f"{count} - {now - self._start:.0f}s - {per_step}"
                  f"{format_metrics(self._averages())}", file=self.file, flush=True)
        if finalize:
            self._finished = True

    def add(self, n, values=None):
        """Advance by ``n`` steps."""
        self.update(self._seen + n, values)

    def close(self):
        """Release the terminal line without a final summary (e.g. training interrupted)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._finished = True
