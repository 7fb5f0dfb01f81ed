"""The parts of `llmctl push` (llmctl.core.push): which files of a run's model folder go, and the upload.

The folder goes as it is (weights, tokenizer, llmctl.json, the model card README.md) through
huggingface_hub's create_repo + upload_folder. The token comes from where huggingface_hub
looks (HF_TOKEN, the saved `hf auth login` token) and is never printed. An unreachable Hub
fails within seconds (llmctl.models.hub's probe) instead of retrying.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from pathlib import Path

from llmctl.errors import LlmctlError, ModelError, UsageError

# Names that hold credentials, never uploaded even when they sit in the model folder (a pasted
# HF token, a key used to fetch the base model); compared lower-case.
SECRET_NAMES = ("token", "*.token", "*token.txt", ".env", "*.env", "*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*",
                "id_dsa*", "id_ecdsa*", "id_ed25519*", "credentials*", ".netrc", ".git-credentials", ".pypirc")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


def check_repo_id(repo_id: str) -> None:
    """ORG/NAME with the Hub's own rules (letters, digits, - _ .; no -- or ..; not ending in .git)."""
    if not _REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        raise UsageError(f"--repo-id '{repo_id}' is not a Hub repository id of the form ORG/NAME.",
                         "Use letters, digits, '-', '_' or '.', e.g. --repo-id my-org/sst2-bert.")


def model_files(run: str) -> tuple[Path, list[tuple[str, int]], list[dict]]:
    """(the model folder, [(path inside it, bytes)], [{"path", "why"} left out]) of a run (or of a
    saved model folder). Only regular files are sent: a symlink (which may lead out of the run)
    and a secret-looking name are left out and named, hidden files silently as before."""
    from llmctl.models.saved import MODEL_DIR

    path = Path(run).expanduser()
    folder = path / MODEL_DIR if (path / MODEL_DIR).is_dir() else path
    if not ((folder / "config.json").is_file() or (folder / "adapter_config.json").is_file()):
        why = f"{folder} holds no config.json" if folder != path else f"no {MODEL_DIR}/ folder"
        raise ModelError(f"{path} has no saved model ({why}), so there is nothing to push.",
                         "Push a run that finished at least one evaluation (or its model/ folder).")
    files, skipped = [], []
    for top, dirs, names in os.walk(folder):  # followlinks=False: a linked folder is reported, not entered
        for name in sorted(dirs + names):
            path = Path(top) / name
            rel = path.relative_to(folder).as_posix()
            if name.startswith("."):
                if name in dirs:
                    dirs.remove(name)
                if not _secret(name):
                    continue
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                skipped.append({"path": rel, "why": f"a symbolic link (to {os.readlink(path)})"})
            elif _secret(name):
                skipped.append({"path": rel, "why": "its name looks like a secret (token, key or credentials)"})
            elif stat.S_ISREG(mode):
                files.append((rel, os.lstat(path).st_size))
            elif not stat.S_ISDIR(mode):
                skipped.append({"path": rel, "why": "not a regular file"})
    return folder, sorted(files), sorted(skipped, key=lambda s: s["path"])


def local_base_warnings(folder: Path) -> list[str]:
    """What a pushed adapter would get wrong: adapter_config.json naming its base by a local path
    (a .gguf file in /tmp, a folder), which nobody who downloads the adapter can load."""
    import json

    config = folder / "adapter_config.json"
    if not config.is_file():
        return []
    try:
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(base, str) or not (Path(base).is_absolute() or Path(base).expanduser().exists()):
        return []
    return [f"{config} names the base model by a local path ({base}), which nobody who downloads the adapter "
            "can load. Set base_model_name_or_path there to the base's Hub id (e.g. "
            "HuggingFaceTB/SmolLM2-135M-Instruct) before pushing; `llmctl eval` and `export` of this run then "
            "need `--base PATH` (export) or the Hub copy of the base."]


def _secret(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), pattern) for pattern in SECRET_NAMES)


def upload(folder: Path, files: list[str], repo_id: str, private: bool, endpoint: str, message: str) -> str:
    """Create the repository if new and commit exactly `files` (paths inside `folder`); returns the commit URL."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=endpoint)
    # Exactly the listed files (not upload_folder, which would follow links and take every name).
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.create_commit(repo_id=repo_id, repo_type="model", operations=operations,
                                   commit_message=message)
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        raise LlmctlError(f"The Hub refused the upload to {repo_id}"
                          + (f" (HTTP {status})" if status else "") + f": {str(exc).splitlines()[0]}",
                          "Check that the token has write access to that organisation.") from exc
    return str(getattr(commit, "commit_url", commit))
