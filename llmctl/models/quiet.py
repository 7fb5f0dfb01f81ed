"""Keep the libraries' chatter (advisories, progress bars, telemetry) off the user's terminal and
CI logs; every command that loads a model calls quiet_libraries first."""

from __future__ import annotations

import os
import sys

# The user's own TOKENIZERS_PARALLELISM, read before quiet_libraries sets a default
# (llmctl.data.prepare turns parallel tokenizing on only when the user left it unset).
USER_TOKENIZERS_PARALLELISM = os.environ.get("TOKENIZERS_PARALLELISM")


def quiet_libraries() -> None:
    """Keep library chatter (advisories, progress bars) off the user's terminal and CI logs."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    # datasets reads both settings when it is first imported; importing it here only to quiet it
    # cost every `predict` 0.9 s of start-up, though most commands never load a dataset.
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if "datasets" in sys.modules:  # already imported: its settings were read, set them directly
        datasets = sys.modules["datasets"]
        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
