"""`llmctl report`: one self-contained HTML page per run (build.py reads the run, page.py writes
the HTML, worst.py runs the saved model over the validation split)."""
