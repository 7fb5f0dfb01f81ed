"""`llmctl push RUN --repo-id ORG/NAME` as a function: the checks (repository id, run files, Hub
reachable, a token), the list of files (llmctl.export.push.model_files), then the upload.

    result = push("runs/sst2", "my-org/sst2-bert", dry_run=True)   # what would be sent, no network
"""

from __future__ import annotations

import os
from pathlib import Path

from llmctl.errors import ModelError, UsageError
from llmctl.export.push import check_repo_id, local_base_warnings, model_files, upload


def push(run: str, repo_id: str, private: bool = False, dry_run: bool = False) -> dict:
    """Upload (or with dry_run only list) a run's model folder; returns what was (or would be) sent."""
    from huggingface_hub import get_token

    from llmctl.models.hub import hub_offline, hub_reachable
    from llmctl.runs.files import check_run

    check_repo_id(repo_id)
    check_run(run)
    folder, files, skipped = model_files(run)
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    result = {"repo_id": repo_id, "url": f"{endpoint}/{repo_id}", "private": private, "folder": str(folder),
              "files": [{"path": name, "bytes": size} for name, size in files],
              "total_bytes": sum(size for _, size in files), "skipped": skipped, "dry_run": dry_run,
              "token_found": get_token() is not None, "warnings": local_base_warnings(folder)}
    if dry_run:
        return result
    if hub_offline():
        raise ModelError("HF_HUB_OFFLINE is set, so nothing can be uploaded to the Hugging Face Hub.",
                         "Unset HF_HUB_OFFLINE to push, or pass --dry-run to see what would be uploaded.")
    if not hub_reachable():
        raise ModelError(f"The Hugging Face Hub ({endpoint}) is unreachable, so {repo_id} cannot be uploaded.",
                         "Check the network (or HF_ENDPOINT) and push again; --dry-run lists the files offline.")
    if not result["token_found"]:
        raise UsageError("No Hugging Face token found (HF_TOKEN or a saved login), and the Hub needs one to upload.",
                         "Run `hf auth login` or set HF_TOKEN to a token with write access.")
    commit_url = upload(folder, [name for name, _ in files], repo_id, private, endpoint, f"llmctl push {Path(run).name}")
    return result | {"commit_url": commit_url}
