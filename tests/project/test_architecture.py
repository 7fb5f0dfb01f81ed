"""The house's plan, checked against its imports: which folders make which part, and which imports
between parts are forbidden. Every `import` counts, lazy ones inside functions included, and a
module that belongs to no part fails too. The development docs show the same map."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Part -> the paths (relative to the repository) that make it; the longest matching path wins.
PARTS = {
    "cli": ["llmctl/cli", "llmctl/__main__.py"],
    "core": ["llmctl/core"],
    "report": ["llmctl/runs/report"],
    "doctor": ["llmctl/doctor"],
    "export": ["llmctl/export"],
    "serve": ["llmctl/serve"],
    "runs": ["llmctl/runs"],
    "generation": ["llmctl/generation"],
    "tasks": ["llmctl/tasks"],
    "train": ["llmctl/train"],
    "data": ["llmctl/data"],
    "models": ["llmctl/models"],
    "metrics": ["llmctl/metrics"],
    "config": ["llmctl/config"],
    "console": ["llmctl/console.py"],
    "base": ["llmctl/__init__.py", "llmctl/errors.py", "llmctl/events.py", "llmctl/files.py", "llmctl/faults.py"],
}
ALL = set(PARTS)
COMMANDS = {"cli", "core", "report", "doctor", "export", "serve"}  # what turns parts into a command's work
# Part -> the parts it must never import.
FORBIDDEN = {
    "core": {"cli"},
    # Below the commands nothing prints or draws: parts yield events, return notes or log to the
    # `llmctl` logger, and the console (or the command's own rendering in cli/) shows them.
    "report": {"cli", "console"},
    "doctor": {"cli", "core", "report", "export", "console"},
    "export": {"cli", "core", "report", "doctor", "console"},
    # The HTTP server: routes, schemas, the batching engine; loads nothing itself (core hands it the
    # loaded model or predictor) and prints nothing (the command's callbacks write its lines).
    "serve": {"cli", "core", "report", "doctor", "export", "console", "runs", "train", "data"},
    "runs": COMMANDS | {"console"},  # reading a run back never needs a command
    "generation": COMMANDS | {"runs", "console"},
    # The loop, tasks, data, config and metrics never print (no console) nor reach up to a command.
    "tasks": COMMANDS | {"console", "train"},
    "train": COMMANDS | {"console", "generation"},
    "data": COMMANDS | {"console", "runs", "generation", "tasks", "train"},
    "models": COMMANDS | {"console", "runs", "generation", "tasks", "train", "data"},
    "metrics": ALL - {"metrics", "base"},
    "config": ALL - {"config", "base"},
    "console": ALL - {"console", "base", "metrics"},  # metrics: how per-type scores are grouped
    "base": ALL - {"base"},
}
# Third-party packages a part must not import at all.
DRAWING = {"rich", "tqdm"}
FORBIDDEN_PACKAGES = {"config": {"torch", "transformers", "datasets", "accelerate", "peft"} | DRAWING} | {
    part: DRAWING for part in ALL - {"cli", "core", "console", "config"}}
# Parts that may write to the terminal: the commands and the console, the one output sink.
SPEAKERS = {"cli", "core", "console"}
# The fault seam's handshake with the test that paused the process (tests/, never a user's terminal).
MAY_PRINT = {"llmctl/faults.py"}


def part_of(path: str) -> str | None:
    found = [(len(prefix), part) for part, prefixes in PARTS.items() for prefix in prefixes
             if path == prefix or path.startswith(prefix.rstrip("/") + "/")]
    return max(found)[1] if found else None


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of llmctl/ under `root`."""
    found = {}
    for path in sorted((root / "llmctl").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, name) of every import in the file, at any depth: an llmctl module (the module a
    `from X import Y` names when Y is one, else X) or a third-party top-level package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module)
                      for a in node.names]
    return found


def prints(path: Path) -> list[int]:
    """Lines that print or write to sys.stdout / sys.stderr, outside an `if __name__ == "__main__":`
    block (a module run as a script is a command of its own)."""
    tree = ast.parse(path.read_text(), str(path))
    script = {id(node) for block in tree.body if isinstance(block, ast.If) and "__main__" in ast.unparse(block.test)
              for node in ast.walk(block)}
    found = []
    for node in ast.walk(tree):
        if id(node) in script:
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            found.append(node.lineno)
        elif (isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr") and isinstance(node.value, ast.Name)
              and node.value.id == "sys" and not _only_asks_isatty(node, tree)):
            found.append(node.lineno)
    return sorted(set(found))


def _only_asks_isatty(node: ast.Attribute, tree: ast.AST) -> bool:
    """`sys.stderr.isatty()`: asking whether a terminal is there writes nothing."""
    return any(isinstance(parent, ast.Attribute) and parent.value is node and parent.attr == "isatty"
               for parent in ast.walk(tree))


def violations(root: Path) -> list[str]:
    """Every way the tree under `root` breaks the plan, one line each."""
    known = modules(root)
    problems, graph = [], {name: set() for name in known}
    for name, path in known.items():
        rel = path.relative_to(root).as_posix()
        part = part_of(rel)
        if part is None:
            problems.append(f"{rel}: belongs to no part; add its folder to PARTS")
            continue
        if part not in SPEAKERS and rel not in MAY_PRINT:
            problems += [f"{rel}:{line}: {part} prints (only the commands and the console may)" for line in prints(path)]
        for line, target in imports(path, known):
            if target.split(".")[0] in FORBIDDEN_PACKAGES.get(part, ()):
                problems.append(f"{rel}:{line}: {part} imports {target}")
            while target not in known and "." in target:  # `import llmctl.x.y.name` forms
                target = target.rpartition(".")[0]
            if target not in known or target == name:
                continue
            graph[name].add(target)
            target_part = part_of(known[target].relative_to(root).as_posix())
            if target_part in FORBIDDEN.get(part, ()):
                problems.append(f"{rel}:{line}: {part} imports {target} ({target_part})")
    return problems + [f"import circle: {' -> '.join(circle)}" for circle in circles(graph)]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One closed path through each group of modules that import each other (Tarjan's SCC)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group) + [min(group)])
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_is_in_a_part_and_no_import_crosses_a_forbidden_line():
    assert violations(REPO) == []


def copy_of_the_tree(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "llmctl", tmp_path / "llmctl", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_check_fails_on_a_forbidden_lazy_import_a_circle_and_a_stray_module(tmp_path):
    root = copy_of_the_tree(tmp_path)
    store = root / "llmctl" / "data" / "store.py"
    store.write_text(store.read_text() + "\n\ndef _shout():\n    from llmctl.console import warn\n\n    warn('x')\n")
    errors = root / "llmctl" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom llmctl.faults import hook  # noqa\n")
    faults = root / "llmctl" / "faults.py"
    faults.write_text(faults.read_text() + "\nimport llmctl.errors  # noqa\n")
    schema = root / "llmctl" / "config" / "schema.py"
    schema.write_text(schema.read_text() + "\n\ndef _heavy():\n    import torch  # noqa\n")
    (root / "llmctl" / "stray.py").write_text('"""A module in no part."""\n')
    found = violations(root)
    lines = len(store.read_text().splitlines())
    assert f"llmctl/data/store.py:{lines - 2}: data imports llmctl.console (console)" in found
    assert any(line.startswith("llmctl/config/schema.py:") and "config imports torch" in line for line in found)
    assert "import circle: llmctl.errors -> llmctl.faults -> llmctl.errors" in found
    assert "llmctl/stray.py: belongs to no part; add its folder to PARTS" in found
    assert len(found) == 4, found


def test_the_check_fails_when_a_part_below_the_commands_prints_draws_or_imports_the_console(tmp_path):
    root = copy_of_the_tree(tmp_path)
    stream = root / "llmctl" / "generation" / "stream.py"
    stream.write_text(stream.read_text() + "\n\ndef _shout(text):\n    print(text)\n")
    card = root / "llmctl" / "runs" / "model_card.py"
    card.write_text(card.read_text() + "\n\ndef _scribble(text):\n    import sys\n\n    sys.stderr.write(text)\n")
    doctor = root / "llmctl" / "doctor" / "run.py"
    doctor.write_text(doctor.read_text() + "\n\ndef _table():\n    from rich.table import Table  # noqa\n"
                      "    from llmctl.console import tell  # noqa\n")
    script = root / "llmctl" / "export" / "push.py"  # a module run as a script is a command of its own
    script.write_text(script.read_text() + "\n\nif __name__ == '__main__':\n    import sys\n\n    print(sys.argv)\n")
    found = violations(root)
    stream_lines, card_lines, doctor_lines = (len(p.read_text().splitlines()) for p in (stream, card, doctor))
    assert f"llmctl/generation/stream.py:{stream_lines}: generation prints (only the commands and the console may)" in found
    assert f"llmctl/runs/model_card.py:{card_lines}: runs prints (only the commands and the console may)" in found
    assert f"llmctl/doctor/run.py:{doctor_lines - 1}: doctor imports rich.table" in found
    assert f"llmctl/doctor/run.py:{doctor_lines}: doctor imports llmctl.console (console)" in found
    assert len(found) == 4, found
