"""Shared pytest setup: offline mode and tiny local checkpoints."""

import os

# Set before transformers/datasets/huggingface_hub are imported anywhere: tests must
# never reach the network (the Hub is unreachable and would only add timeouts).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
# Avoid the tokenizers fork warning/deadlock when DataLoader workers fork.
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# The feature cache of these tests lives and dies with the session, never in ~/.cache.
import tempfile  # noqa: E402

os.environ["LLMCTL_CACHE_DIR"] = tempfile.mkdtemp(prefix="llmctl-test-cache-")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    """{"bert"|"gpt2"|"t5": Path} of tiny save_pretrained checkpoints, built once per session."""
    from tiny_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny_models"))
