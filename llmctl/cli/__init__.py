"""The `llmctl` command line: thin commands over llmctl.core.

Nothing heavy is imported here; each command imports torch & co. inside its body, so
`llmctl --help` and `llmctl recipes list` start fast. The app and the error wrapper live in
llmctl.cli._app; importing each command module below registers its commands on the app.
"""

from __future__ import annotations

import signal
import sys

from llmctl.cli._app import _sigterm, _stdout_gone, app  # noqa: F401  (the entry point's)
from llmctl.errors import EXIT_PIPE_CLOSED, EXIT_USAGE

from llmctl.cli import cache as _cache
from llmctl.cli import doctor as _doctor
from llmctl.cli import embed as _embed
from llmctl.cli import env as _env
from llmctl.cli import eval as _eval
from llmctl.cli import export as _export
from llmctl.cli import finetune as _finetune
from llmctl.cli import generate as _generate
from llmctl.cli import models as _models
from llmctl.cli import predict as _predict
from llmctl.cli import push as _push
from llmctl.cli import recipes as _recipes
from llmctl.cli import runs as _runs
from llmctl.cli import report as _report
from llmctl.cli import serve as _serve

app.add_typer(_recipes.recipes_app, name="recipes")
app.add_typer(_cache.cache_app, name="cache")
app.add_typer(_runs.runs_app, name="runs")
app.add_typer(_models.models_app, name="models")


def main() -> None:
    from llmctl.console import route_logs

    signal.signal(signal.SIGTERM, _sigterm)
    route_logs()
    try:
        app()
        sys.stdout.flush()  # output still buffered here can meet a closed pipe too
    except BrokenPipeError:
        _stdout_gone()
        sys.exit(EXIT_PIPE_CLOSED)
    except SystemExit as exc:
        # Click uses 2 for usage errors too, which matches EXIT_USAGE.
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
        sys.exit(code)
