"""llmctl: fine-tune, evaluate and run transformer models from a terminal or a CI job."""


def _declared_version() -> str:
    """The one version llmctl declares, `[project] version` in pyproject.toml.

    From a source tree (a checkout, or an editable install of one) pyproject.toml itself is read,
    so a stale install elsewhere on the path cannot misreport it; an installed wheel has no
    pyproject.toml beside the package and answers from its metadata (importlib.metadata).
    Light on purpose: `llmctl --version` and `--help` import nothing heavy.
    """
    import re
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        project = pyproject.read_text(encoding="utf-8").split("\n[project]\n", 1)[1].split("\n[", 1)[0]
    except (OSError, IndexError):
        project = ""
    if re.search(r'^name\s*=\s*"llmctl"', project, flags=re.M):
        match = re.search(r'^version\s*=\s*"([^"]+)"', project, flags=re.M)
        if match:
            return match.group(1)
    from importlib import metadata

    try:
        return metadata.version("llmctl")
    except metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _declared_version()
