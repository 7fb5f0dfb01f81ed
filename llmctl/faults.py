"""Test-only fault injection and example tracing: one seam, `hook(point, **ctx)`, switched
on by environment variables and a no-op (two dictionary lookups) when they are unset.

Points production code reports:
    hook("step", rank=, epoch=, step=, indices=)  after each optimizer step, before any checkpoint
    hook("eval", rank=, step=)                    before each batch of an evaluation during training
    hook("command", name=)                       as a command starts (predict, eval, generate, ...)
    hook("decode", step=)                        before each decoding step of `llmctl serve`'s engine
    hook("write", step=, name=)                   before writing a checkpoint file, the best model
                                                  (name "model/"), a feature-cache entry ("cache/"),
                                                  an export ("export/") or a report ("report");
                                                  step 0, name "run.lock": before finetune opens the
                                                  run directory (everything has loaded)

What the variables make of them:
    LLMCTL_FAULT=pause@7                     after optimizer step 7, sleep until killed
    LLMCTL_FAULT=pause@4:model.safetensors   inside the step-4 checkpoint save, sleep before that file
    LLMCTL_FAULT=enospc@4:model.safetensors  that file's write fails with ENOSPC (disk full)
    LLMCTL_FAULT=pause@0:run.lock            stop before taking the run directory; with
    LLMCTL_FAULT_UNTIL=PATH                  any pause goes on once PATH exists (two runs made to race)
    LLMCTL_FAULT=enospc@10:model/            saving the best model at step 10 fails the same way
    LLMCTL_FAULT=full@0:cache/               from that point on the disk is full for real: every file
                                             that grows past 128 bytes fails (RLIMIT_FSIZE, SIGXFSZ
                                             ignored), so each library meets its own short write
                                             (numpy's np.save ends the file early without a word,
                                             safetensors' says "os error 27")
    LLMCTL_FAULT=pause@0:predict             as `llmctl predict` starts, sleep until a signal
    LLMCTL_FAULT=pause@1:decode              before every serve decoding step from step 1 on, wait while
                                             LLMCTL_FAULT_UNTIL's PATH is absent: the test steps the engine
    LLMCTL_FAULT=sigterm@3                   after step 3, the rank-0 process sends itself SIGTERM
    LLMCTL_FAULT=sigint@5:eval               ... SIGINT, before the first batch of the step-5 evaluation
    LLMCTL_TRACE_EXAMPLES=PATH               append one JSON line per optimizer step and process:
                                             {"rank", "epoch", "step", "indices"}

The reliability tests (tests/train/test_kill_resume.py, tests/train/test_reliability.py) use them to
SIGKILL or starve a real `llmctl finetune` at an exact point, and to check that a resumed
run trains on exactly the examples an uninterrupted one does. A pause prints one
`llmctl-fault: paused ...` line to stderr so the test knows when to strike.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import time

_fired: set[tuple] = set()


def hook(point: str, **ctx) -> None:
    trace, fault = os.environ.get("LLMCTL_TRACE_EXAMPLES"), _fault()
    if not trace and not fault:
        return
    if point == "step":
        if trace:
            _trace(trace, ctx["rank"], ctx["epoch"], ctx["step"], ctx["indices"])
        if fault == ("pause", ctx["step"], None):
            _pause(f"after step {ctx['step']}")
        _maybe_signal(fault, ctx["rank"], ctx["step"], None)
    elif point == "eval":
        _maybe_signal(fault, ctx["rank"], ctx["step"], "eval")
    elif point == "write":
        _before_write(fault, ctx["step"], ctx["name"])
    elif point == "decode":
        until = os.environ.get("LLMCTL_FAULT_UNTIL")
        if fault and fault[0] == "pause" and fault[2] == "decode" and ctx["step"] >= fault[1] \
                and not (until and os.path.exists(until)):
            _pause(f"before decoding step {ctx['step']}")
    elif point == "command":
        if fault == ("pause", 0, ctx["name"]):
            _pause(f"at the start of {ctx['name']}")
    else:
        raise ValueError(f"unknown fault point {point!r}")


def _fault() -> tuple[str, int, str | None] | None:
    spec = os.environ.get("LLMCTL_FAULT")
    if not spec:
        return None
    action, _, where = spec.partition("@")
    step, _, name = where.partition(":")
    return action, int(step), name or None


def _pause(what: str) -> None:
    print(f"llmctl-fault: paused {what}", file=sys.stderr, flush=True)
    until = os.environ.get("LLMCTL_FAULT_UNTIL")
    while not (until and os.path.exists(until)):  # until the test kills us, or lets us go on
        time.sleep(0.1 if until else 60)


def _trace(path: str, rank: int, epoch: int, step: int, indices: list) -> None:
    examples = [int(i) for index in indices for i in index.tolist()]
    line = json.dumps({"rank": rank, "epoch": epoch, "step": step, "indices": examples}) + "\n"
    # One O_APPEND write per line: lines from several processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _maybe_signal(fault, rank: int, step: int, where: str | None) -> None:
    # Rank 0 only, once: the other processes must learn of it through the loop's own checks.
    if not fault or fault[0] not in ("sigint", "sigterm") or fault[1:] != (step, where) or rank != 0:
        return
    if fault in _fired:
        return
    _fired.add(fault)
    os.kill(os.getpid(), signal.SIGINT if fault[0] == "sigint" else signal.SIGTERM)


def _before_write(fault, step: int, name: str) -> None:
    if not fault or fault[1] != step or fault[2] != name:
        return
    if fault[0] == "pause":
        _pause(f"writing checkpoint step {step} before {name}")
    if fault[0] == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
    if fault[0] == "full":
        _fill_disk()


FULL_BYTES = 128


def _fill_disk() -> None:
    """Writes past FULL_BYTES of any one file now fail as on a full disk: the kernel cuts them
    short and then refuses them (EFBIG) instead of killing the process with SIGXFSZ."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_BYTES, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
