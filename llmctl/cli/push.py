"""`llmctl push RUN --repo-id ORG/NAME`: upload a run's model folder to the Hub (llmctl.core.push)."""

from __future__ import annotations

import typer

from llmctl.cli._app import app


@app.command("push")
def push_command(
    run: str = typer.Argument(..., metavar="RUN", help="Run directory from `llmctl finetune` (or its model/ folder)."),
    repo_id: str = typer.Option(..., "--repo-id", metavar="ORG/NAME", help="Hub model repository (created if new)."),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be uploaded; touch no network."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Upload a run's model (weights, tokenizer, model card) to the Hugging Face Hub."""
    from llmctl.console import fmt_size, print_json, warn
    from llmctl.core.push import push

    result = push(run, repo_id, private=private, dry_run=dry_run)
    for entry in result["skipped"]:  # on stderr, also with --json: a left-out file is never silent
        warn(f"not uploaded: {entry['path']} ({entry['why']})")
    for message in result["warnings"]:  # on stderr, also with --json
        warn(message)
    if json_out:
        print_json(result)
        return
    what = "would upload" if dry_run else "uploaded"
    print(f"{what} {len(result['files'])} files ({fmt_size(result['total_bytes'], grouped=True)}) from {result['folder']} "
          f"to {result['url']}{' (private)' if private else ''}")
    for entry in result["files"]:
        print(f"  {fmt_size(entry['bytes'], grouped=True):>10}  {entry['path']}")
    if dry_run and not result["token_found"]:
        print("no Hugging Face token found: set HF_TOKEN or run `hf auth login` before pushing")
    if not dry_run:
        print(f"commit: {result['commit_url']}")
