"""`llmctl doctor`: look at a recipe's data before any model weights load.

    run.py          read the splits as finetune does, call the task family's checks
    checks.py       what every family shares: lengths, duplicates, leakage, label balance
    <family>.py     classification, ner, qa, causal_lm, seq2seq (generic: any other task)
    report.py       findings (error / warning), per-split figures, the exit code

The doctor returns its report and never prints: llmctl.cli._doctor_report renders it (Rich tables on
a terminal, plain text otherwise), --json prints Report.to_json.
"""
