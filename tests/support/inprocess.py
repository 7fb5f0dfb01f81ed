"""Run `llmctl ARGS` inside the test process, as a fresh `python -m llmctl` would run it.

Starting a subprocess costs the torch + transformers import (seconds on 2 cores) per call, and
the suite makes hundreds of calls. In-process, the same `llmctl.cli.main()` runs with:

- sys.argv, the program name click derives (`python -m llmctl`), cwd, os.environ and stdin set
  as the subprocess would have them, and put back afterwards;
- file descriptors 1 and 2 pointed at temporary files, with fresh sys.stdout / sys.stderr over
  them, so what Python prints, what C libraries write and what logging handlers created earlier
  write all land where a user's terminal would show them, in order;
- the process-wide state a fresh interpreter starts with: Python's default warning filters (not
  pytest's recording ones) with the once-only registries forgotten, no handlers on the root
  logger (Python's last-resort handler prints warnings, as in a fresh process), every logger's
  level and handlers as before the call, the library progress-bar switches, transformers'
  warn-once caches, accelerate's singleton state, llmctl's own process caches (faults, hub
  probe, SIGTERM note), signal handlers, torch's RNG, thread count, determinism and dtype;
- SystemExit mapped to the exit code exactly as llmctl.cli.main maps it; an exception that
  escapes main() prints its traceback and gives 1, as the interpreter does.

What it cannot reproduce is the process itself: exit by signal, SIGKILL/SIGTERM from outside,
which modules `--help` imports, a terminal (isatty), the fault seam (it pauses, signals or
rlimits its own process), several processes (accelerate launch, torchrun, concurrent starts) and
environment variables libraries read once at import. helpers.run_cli runs those in a real
subprocess (subprocess=True, or automatically for such environment variables).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

# Environment variables read once when a module is imported (huggingface_hub.constants,
# datasets.config, llmctl.models.quiet, sitecustomize through PYTHONPATH), or that make the
# process itself the subject (the fault seam, distributed launch): a call that changes one of
# them needs a fresh interpreter.
PROCESS_ENV_PREFIXES = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "WANDB_", "MLFLOW_", "ACCELERATE_", "LLMCTL_FAULT",
                        "TORCH", "CUDA_", "PYTHON", "MASTER_", "FSDP_")
PROCESS_ENV = {"HOME", "XDG_CACHE_HOME", "TOKENIZERS_PARALLELISM", "RANK", "LOCAL_RANK", "WORLD_SIZE",
               "LOCAL_WORLD_SIZE", "BLOCKED_NETWORK_LOG", "NO_MKDOCS_2_WARNING"}
# Read when each call starts: safe in-process.
CALL_ENV = {"LLMCTL_CACHE_DIR", "LLMCTL_DEBUG", "LLMCTL_RECIPES", "LLMCTL_CPU_SPEEDUPS", "LLMCTL_KEEP_FREED_MEMORY",
            "LLMCTL_TRACE_EXAMPLES", "OMP_NUM_THREADS", "TERM", "NO_COLOR", "COLUMNS"}


def needs_process(env: dict | None) -> bool:
    """True when `env` changes a variable that only a fresh process would honour."""
    for key, value in (env or {}).items():
        if key in CALL_ENV or os.environ.get(key) == value:
            continue
        if key in PROCESS_ENV or key.startswith(PROCESS_ENV_PREFIXES):
            return True
    return False


# A fresh CPython's warning filters (no -W, no PYTHONWARNINGS), as `python -c
# "import warnings; print(warnings.filters)"` lists them.
_PYTHON_DEFAULT_FILTERS = [
    ("default", None, DeprecationWarning, "__main__", 0),
    ("ignore", None, DeprecationWarning, None, 0),
    ("ignore", None, PendingDeprecationWarning, None, 0),
    ("ignore", None, ImportWarning, None, 0),
    ("ignore", None, ResourceWarning, None, 0),
]


def _show_warning(msg) -> None:
    """What Python's own warnings._showwarnmsg_impl does (pytest replaces it to record)."""
    file = msg.file or sys.stderr
    try:
        file.write(warnings._formatwarnmsg_impl(msg))
    except OSError:
        pass


@contextlib.contextmanager
def _fresh_warnings():
    with warnings.catch_warnings():
        warnings.filters[:] = list(_PYTHON_DEFAULT_FILTERS)
        warnings._filters_mutated()  # forget which "default"/"once" warnings were shown already
        warnings._showwarnmsg_impl = _show_warning
        warnings.showwarning = warnings._showwarning_orig
        yield
    warnings._filters_mutated()


def _loggers() -> list[logging.Logger]:
    manager = logging.Logger.manager
    return [logging.getLogger()] + [lg for lg in list(manager.loggerDict.values()) if isinstance(lg, logging.Logger)]


@contextlib.contextmanager
def _fresh_logging(old_streams: tuple, new_streams: tuple):
    """Root without handlers at WARNING (as in a fresh process); every logger's level, handlers
    and propagation put back afterwards; StreamHandlers made earlier on the old sys.stdout /
    sys.stderr write to the captured ones meanwhile."""
    saved = {lg: (lg.level, list(lg.handlers), lg.propagate, lg.disabled) for lg in _loggers()}
    root = logging.getLogger()
    root.handlers[:] = []
    root.setLevel(logging.WARNING)
    disable = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    moved = _retarget_handlers(dict(zip(old_streams, new_streams)))
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.stream = stream
        # handlers created during the call on the captured streams go back to the real ones
        _retarget_handlers(dict(zip(new_streams, old_streams)))
        for lg in _loggers():
            if lg in saved:
                lg.level, handlers, lg.propagate, lg.disabled = saved[lg]
                lg.handlers[:] = handlers
            elif lg.name == "llmctl" or lg.name.startswith("llmctl."):  # as logging.getLogger makes it
                lg.handlers[:], lg.level, lg.propagate = [], logging.NOTSET, True
        logging.disable(disable)
        logging.Logger.manager._clear_cache()


def _retarget_handlers(mapping: dict) -> list:
    moved = []
    for lg in _loggers():
        for handler in lg.handlers:
            stream = vars(handler).get("stream")  # not a property that looks sys.stderr up itself
            if isinstance(handler, logging.StreamHandler) and any(stream is s for s in mapping):
                moved.append((handler, stream))
                handler.stream = next(new for old, new in mapping.items() if old is stream)
    return moved


@contextlib.contextmanager
def _library_state():
    """Progress-bar switches, warn-once caches and singletons of the libraries a command uses,
    as a fresh process has them; put back afterwards."""
    import importlib

    import torch

    # by module name: the packages re-export functions and classes under these same names
    ds_tqdm = importlib.import_module("datasets.utils.tqdm")
    hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")
    tf_logging = importlib.import_module("transformers.utils.logging")

    saved = (tf_logging._tqdm_active, ds_tqdm._hf_datasets_progress_bars_disabled,
             dict(hub_tqdm.progress_bar_states))
    torch_state = (torch.random.get_rng_state(), torch.get_num_threads(), torch.get_default_dtype(),
                   torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    import random

    import numpy as np

    py_rng, np_rng = random.getstate(), np.random.get_state()
    for once in (tf_logging.warning_once, tf_logging.info_once):
        once.cache_clear()
    _reset_llmctl_caches()
    try:
        yield
    finally:
        tf_logging._tqdm_active, ds_tqdm._hf_datasets_progress_bars_disabled = saved[:2]
        hub_tqdm.progress_bar_states.clear()
        hub_tqdm.progress_bar_states.update(saved[2])
        rng, threads, dtype, deterministic, warn_only = torch_state
        torch.random.set_rng_state(rng)
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        random.setstate(py_rng)
        np.random.set_state(np_rng)
        _reset_accelerate()
        _reset_llmctl_caches()


def _reset_accelerate() -> None:
    if "accelerate.state" in sys.modules:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def _reset_llmctl_caches() -> None:
    """The process-lifetime state of llmctl itself (a fresh process starts without it)."""
    if "llmctl.faults" in sys.modules:
        sys.modules["llmctl.faults"]._fired.clear()
    if "llmctl.cli._app" in sys.modules:
        sys.modules["llmctl.cli._app"]._TERMINATED.clear()
    if "llmctl.models.hub" in sys.modules:
        sys.modules["llmctl.models.hub"].hub_reachable.cache_clear()
    if "llmctl.console" in sys.modules:  # whether this command already printed its JSON object
        sys.modules["llmctl.console"]._JSON_PRINTED.clear()
    if "llmctl.data.sources" in sys.modules:  # files whose header row was skipped
        sys.modules["llmctl.data.sources"]._HEADER_SKIPPED.clear()
    if "llmctl.data.inputs" in sys.modules:  # the parts of the splits read so far
        sys.modules["llmctl.data.inputs"]._SPLITS.clear()


@contextlib.contextmanager
def _environment(env: dict, cwd: Path | None):
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


@contextlib.contextmanager
def _program(args: tuple):
    """sys.argv and __main__ as `python -m llmctl ARGS` has them (click names the program from them)."""
    import llmctl.__main__ as entry

    saved_argv, saved_main = sys.argv, sys.modules["__main__"]
    sys.argv = [entry.__file__, *args]
    sys.modules["__main__"] = entry
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGXFSZ)}
    try:
        yield
    finally:
        sys.argv = saved_argv
        sys.modules["__main__"] = saved_main
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _captured_fds(stdin_text: str | None):
    """fds 1 and 2 onto temporary files, sys.stdin/stdout/stderr over them; yields a function
    giving (stdout, stderr) decoded as subprocess.run(text=True) decodes them."""
    saved_streams = (sys.stdin, sys.stdout, sys.stderr)
    for stream in saved_streams[1:]:
        with contextlib.suppress(Exception):
            stream.flush()
    files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    saved_fds = [os.dup(1), os.dup(2)]
    os.dup2(files[0].fileno(), 1)
    os.dup2(files[1].fileno(), 2)
    out = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")  # block-buffered, as a pipe
    err = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", line_buffering=True)
    sys.stdin = io.TextIOWrapper(io.BytesIO((stdin_text or "").encode()), encoding="utf-8")
    sys.stdout, sys.stderr = out, err
    texts: list[str] = []
    try:
        yield (saved_streams[1], saved_streams[2]), (out, err), texts
    finally:
        for stream in (out, err):
            with contextlib.suppress(Exception):
                stream.flush()
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        for f in files:
            f.seek(0)
            data = f.read().decode("utf-8", errors="replace")
            texts.append(data.replace("\r\n", "\n").replace("\r", "\n"))  # universal newlines
            f.close()


def _exit_code(exc: SystemExit) -> int:
    """What the interpreter makes of SystemExit(code) (main() already mapped click's)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def run_in_process(args: tuple, env: dict, cwd: Path | None, stdin_text: str | None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of llmctl.cli.main() run with `args`, `env` (the whole
    environment, as cli_env builds it) and `cwd`, inside this process."""
    import torch  # noqa: F401  (imported before the capture: its import-time chatter is not the command's)
    import transformers  # noqa: F401
    import datasets  # noqa: F401

    from llmctl.cli import main

    env = dict(env)
    threads = env.get("OMP_NUM_THREADS")
    with _environment(env, cwd), _program(args), _library_state(), _fresh_warnings():
        if threads:
            torch.set_num_threads(int(threads))
        with _captured_fds(stdin_text) as (old_streams, new_streams, texts):
            with _fresh_logging(old_streams, new_streams):
                try:
                    main()
                    code = 0
                except SystemExit as exc:
                    code = _exit_code(exc)
                except KeyboardInterrupt:
                    traceback.print_exc()
                    code = -signal.SIGINT  # the interpreter re-raises it as the signal
                except BaseException:  # noqa: BLE001  (the interpreter prints it and exits 1)
                    traceback.print_exc()
                    code = 1
    return code, texts[0], texts[1]
