"""The doctor's report for people (`llmctl doctor`, `finetune --dry-run`): Rich tables on a terminal,
the same rows as plain text otherwise (`--json` prints Report.to_json instead). The doctor returns
the report; the commands render it here."""

from __future__ import annotations

import sys


def _fmt(value, name: str = "") -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2%}" if name.endswith("share") else f"{value:g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def split_rows(report) -> list[tuple[str, str, str]]:
    """(split, figure, value) for every figure worth a line."""
    rows = []
    for role, figures in report.splits.items():
        for name, value in figures.items():
            if isinstance(value, dict) and "counts" in value:
                shown = ", ".join(f"{k} {v:,}" for k, v in list(value["counts"].items())[:12])
                rows.append((role, name, f"{shown}  (most/least {value['imbalance']:g})"))
            elif isinstance(value, dict):
                # A switch ({"on": true}, packing's) says so in words first: "on, examples 10, ...".
                switch = ["on" if value["on"] else "off"] if isinstance(value.get("on"), bool) else []
                shown = switch + [f"{k} {_fmt(v, k)}" for k, v in value.items() if not (k == "on" and switch)]
                rows.append((role, name, ", ".join(shown)))
            else:
                rows.append((role, name, _fmt(value, name)))
    return rows


def render(report, title: str = "data") -> None:
    epoch = report.epoch
    steps = f"{epoch['steps_per_epoch']:,} optimizer step{'' if epoch['steps_per_epoch'] == 1 else 's'}" if epoch else ""
    summary = (f"one epoch: {steps} (batch {epoch['batch_size']} x gradient "
               f"accumulation {epoch['gradient_accumulation_steps']} = {epoch['effective_batch_size']} examples, "
               f"{epoch['processes']} process{'es' if epoch['processes'] > 1 else ''})" if epoch else "")
    if report.model:
        summary = "\n".join(filter(None, [summary, model_line(report.model)]))
    errors = sum(f.severity == "error" for f in report.findings)
    warnings = len(report.findings) - errors
    verdict = f"{errors} error(s), {warnings} warning(s)" if report.findings else "nothing wrong found"
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        console = Console()
        table = Table(title=f"{title} ({report.task})", show_lines=False)
        for column in ("split", "figure", "value"):
            table.add_column(column, overflow="fold")
        for row in split_rows(report):
            table.add_row(*map(escape, row))  # file names and labels are data, not markup
        console.print(table)
        if report.findings:
            found = Table(title="findings")
            for column in ("severity", "check", "split", "message"):
                found.add_column(column, overflow="fold")
            for f in report.findings:
                style = "red" if f.severity == "error" else "yellow"
                found.add_row(f"[{style}]{f.severity}[/{style}]", f.check, f.split, escape(f.message))
            console.print(found)
        if summary:
            console.print(summary, markup=False, highlight=False)
        console.print(verdict, markup=False, highlight=False)
        return
    for role, name, value in split_rows(report):
        print(f"{role:<10} {name:<13} {value}")
    for f in report.findings:
        print(f"{f.severity}: [{f.check}] {f.split}: {f.message}")
    if summary:
        print(summary)
    print(verdict)


def model_line(model: dict) -> str:
    """A new model's size: its parameters and what training it takes in memory (fp32 weights,
    gradients and AdamW's two moments)."""
    free = model.get("available_bytes")
    return (f"model: a new {model['model_type']}, {model['parameters']:,} parameters, "
            f"{model['bytes'] / 2**20:,.1f} MiB for weights, gradients and optimizer state"
            + (f" ({free / 2**30:,.1f} GiB of memory available)" if free else ""))


def render_plan(plan: dict) -> None:
    """finetune --dry-run's plan, one line a figure (what it would do, then whether it may)."""
    steps = (f"{plan['steps_per_epoch']:,} steps an epoch, {plan['total_steps']:,} in total "
             f"({plan['warmup_steps']:,} warmup)" if "total_steps" in plan else "steps unknown (training data refused)")
    lines = [f"plan: {steps}",
             f"plan: batch {plan['batch_size']} ({plan['per_process_batch_size']} per process) x gradient accumulation "
             f"{plan['gradient_accumulation_steps']} = effective batch {plan['effective_batch_size']}",
             f"plan: device {plan['device']}, precision {plan['precision']}, {plan['processes']} process(es)",
             *([f"plan: LoRA on {', '.join(plan['lora_target_modules'])}: {plan['trainable_parameters']:,} of "
                f"{plan['total_parameters']:,} parameters train "
                f"({plan['trainable_parameters'] / max(1, plan['total_parameters']):.2%})"]
               if "trainable_parameters" in plan else []),
             f"plan: output {plan['output_dir']} ({plan['mode']}): "
             + (f"refused: {plan['refused']}" if plan["refused"] else "ok"),
             "dry run: nothing trained, no weights loaded, no run directory created."]
    print("\n".join(lines))
