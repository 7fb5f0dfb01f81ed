"""`llmctl cache list | clear [--older-than DAYS]`: the feature cache ($LLMCTL_CACHE_DIR, no heavy imports)."""

from __future__ import annotations

import time
from typing import Optional

import typer

from llmctl.cli._app import CommandApp
from llmctl.console import fmt_size, print_json

cache_app = CommandApp(help="List or clear the cache of tokenized training features.", no_args_is_help=True)


@cache_app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """Entries, most recently used first: task, rows, size, training file."""
    from llmctl.data.cache import cache_root, list_entries

    entries = list_entries()
    if json_out:
        print_json({"cache_dir": str(cache_root()), "entries": entries})
        return
    if not entries:
        print(f"no cached features in {cache_root()}")
        return
    for e in entries:
        age = (time.time() - e["last_used"]) / 86400
        print(f"{e['key'][:12]}  {e['task'] or '?':<14} {e['rows'] or 0:>10,} rows  {fmt_size(e['bytes']):>9}  "
              f"used {age:.1f} days ago  {e['source']}")
    print(f"{len(entries)} entries, {fmt_size(sum(e['bytes'] for e in entries))} in {cache_root()}")


@cache_app.command("clear")
def clear(older_than: Optional[float] = typer.Option(None, "--older-than", metavar="DAYS",
                                               help="Only entries unused for DAYS days."),
          json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """Remove cached features (all, or those unused for --older-than DAYS)."""
    from llmctl.data.cache import cache_root, clear as clear_entries
    from llmctl.errors import UsageError

    if older_than is not None and not older_than >= 0:
        raise UsageError(f"--older-than must be a number of days, 0 or more (got {older_than}).")
    removed, freed = clear_entries(older_than)
    if json_out:
        print_json({"removed": removed, "bytes_freed": freed, "cache_dir": str(cache_root())})
    else:
        print(f"removed {removed} entries ({fmt_size(freed)}) from {cache_root()}")
