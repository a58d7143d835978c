"""How a tfcflow command or job script starts: TensorFlow's own logging quiet unless the user asks
for it, and one line naming the devices the job runs on.

    from tfcflow import _runtime
    _runtime.start()          # before anything imports TensorFlow

TensorFlow writes its C++ log to stderr: at load time, before its logging is set up, absl prints
"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR" and a
few ``I0000 ...`` lines (oneDNN, "Could not find cuda drivers") whatever ``TF_CPP_MIN_LOG_LEVEL``
says, and on every machine without a GPU the first device query logs ``E0000 ... failed call to
cuInit``. So, unless the user set ``TF_CPP_MIN_LOG_LEVEL`` (then it wins and nothing is hidden):

- ``TF_CPP_MIN_LOG_LEVEL`` defaults to 3, which silences the C++ log once TensorFlow runs (E
  lines included; 2 keeps them);
- while TensorFlow loads, stderr (the file descriptor, where the C++ log goes) is read into a
  temporary file and written back without the lines in the C++ log's format: anything else
  written meanwhile (a Python warning, an error) still reaches stderr.

The CLI (``tfcflow ...``, ``python -m tfcflow``) and the job scripts in training/ call ``start``.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
#: how the device line starts (a reader of a command's stderr can tell it from the command's own lines)
DEVICE_LINE_PREFIX = "tfcflow: running on "
#: the level a tfcflow command runs TensorFlow at unless the user set one: 3 = nothing (2 still
#: prints E lines, such as cuInit's on every machine without a GPU)
QUIET_LEVEL = "3"

#: a line of TensorFlow's C++ (absl) log: "I0000 00:00:1796618950.986 28249 port.cc:153] ...",
#: absl's note before its logging is initialized, and the continuation line of the CPU-feature note
_TF_LOG_LINE = re.compile(r"^(?:[IWEF]\d{4} \d+:\d+:\d+\.\d+\s+\d+ [^\s\]]+:\d+\] "
                          r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
                          r"|To enable the following instructions: .* rebuild TensorFlow)")


def is_tensorflow_log_line(line: str) -> bool:
    return bool(_TF_LOG_LINE.match(line))


@contextlib.contextmanager
def tensorflow_logs_hidden():
    """Inside the block, stderr's file descriptor writes to a temporary file; afterwards its lines
    that are not TensorFlow's C++ log are written back to stderr (a no-op where stderr has no file
    descriptor)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = "".join(line for line in text.splitlines(keepends=True) if not is_tensorflow_log_line(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def quiet_tensorflow() -> None:
    """Imports TensorFlow with its C++ log quiet (module docstring), unless the user set
    ``TF_CPP_MIN_LOG_LEVEL``. Call it before anything imports TensorFlow; once it is loaded, only
    the default level is set (TensorFlow reads it when it first logs)."""
    user_set = LOG_LEVEL_VARIABLE in os.environ
    os.environ.setdefault(LOG_LEVEL_VARIABLE, QUIET_LEVEL)
    if user_set or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401
        return
    with tensorflow_logs_hidden():
        import tensorflow  # noqa: F401


def cpu_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def device_line() -> str:
    """``"tfcflow: running on CPU (2 cores)"``, or the GPUs TensorFlow sees
    (``"tfcflow: running on 1 GPU (NVIDIA H100 80GB HBM3)"``)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"{DEVICE_LINE_PREFIX}CPU ({cpu_cores()} cores)"
    names = []
    for gpu in gpus:
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name") or gpu.name)
        except (RuntimeError, ValueError):
            names.append(gpu.name)
    counts = {name: names.count(name) for name in names}  # first-seen order
    kinds = ", ".join(name if n == 1 else f"{n} x {name}" for name, n in counts.items())
    return f"{DEVICE_LINE_PREFIX}{len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({kinds})"


def start(announce: bool = True) -> None:
    """``quiet_tensorflow()``, then (if ``announce``) the device line on stderr."""
    quiet_tensorflow()
    if announce:
        print(device_line(), file=sys.stderr, flush=True)
