"""The run directory and everything that reads it back: opening a run (fresh, resume, overwrite),
the validated reader of run files, listing and showing, compare, the model card, pictures and
the HTML report.
"""
