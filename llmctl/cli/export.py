"""`llmctl export RUN --output DIR`: a run's model as a plain transformers checkpoint or as ONNX (LoRA merged)."""

from __future__ import annotations

from typing import Optional

import typer

from llmctl.cli._app import app


@app.command("export")
def export_command(
    run: str = typer.Argument(..., metavar="RUN",
                              help="Run directory from `llmctl finetune` (LoRA or full fine-tune)."),
    output: str = typer.Option(..., "--output", "-o", metavar="DIR",
                               help="New directory for the checkpoint (must be new or empty)."),
    base: Optional[str] = typer.Option(
        None, "--base", metavar="MODEL", help="LoRA runs: the base model to merge into, when it moved (must be the same weights)."),
    fmt: str = typer.Option("safetensors", "--format", metavar="FORMAT",
                            help="safetensors (every task), or onnx (classification, NER, QA, multiple-choice, "
                                 "masked-LM; `llmctl predict DIR` runs it through onnxruntime)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", metavar="DTYPE",
                                        help="bf16, fp16 or fp32: the weights' type in the export (default: as the "
                                             "run saved them; bf16 and fp16 halve the size of an fp32 model)."),
    quantize: Optional[str] = typer.Option(
        None, "--quantize", metavar="SCHEME",
        help="int8: onnxruntime's dynamic quantisation of the ONNX graph (needs --format onnx); scores it "
             "against the fp32 graph on the run's validation split."),
    max_drop: list[str] = typer.Option(
        [], "--max-drop", metavar="METRIC=AMOUNT",
        help="With --quantize: refuse (exit 4, nothing written) when METRIC drops by more than AMOUNT "
             "from fp32 to int8. Repeatable."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Write a run's model as a plain checkpoint that transformers loads without peft, or as ONNX."""
    import sys

    from llmctl.console import print_json
    from llmctl.core.export import export_run

    result = export_run(run, output, base=base, fmt=fmt, dtype=dtype, quantize=quantize, max_drop=max_drop)
    check = result.get("check")
    if check is not None:  # said with --json too (on stderr): an export is only kept when it matched
        print(f"onnx check: onnxruntime matches PyTorch on a {'x'.join(map(str, check['batch_shape']))} test batch, "
              f"max |diff| {check['max_abs_diff']:.2g} (allowed {check['tolerance']:g})", file=sys.stderr)
    quantized = result.get("quantization")
    if quantized is not None:  # on stderr with --json too, like the check line
        for name, change in quantized["change"].items():
            if change is not None:
                print(f"{quantized['scheme']}: {name} {quantized['quantized'][name]:.4f} (fp32 export "
                      f"{quantized['fp32'][name]:.4f}, change {change:+.4f}) on {quantized['samples']} validation rows",
                      file=sys.stderr)
        print(f"{quantized['scheme']}: model.onnx {quantized['fp32_bytes'] / 1e6:.1f} MB -> "
              f"{quantized['quantized_bytes'] / 1e6:.1f} MB", file=sys.stderr)
    if json_out:
        print_json(result)
    else:
        how = "adapter merged into its base" if result["merged_adapter"] else "full fine-tune"
        dtype = result["dtype"] if quantized is None else f"{quantized['scheme']} weights, {result['dtype']} activations"
        print(f"wrote {result['output']} ({result['format']}, {dtype}, {how}, "
              f"{result['parameters']:,} parameters)",
              file=sys.stderr)
