"""Reading raw examples: local files and Hub datasets (sources.py), before any tokenizer."""
