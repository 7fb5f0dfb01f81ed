"""The importable core behind each command: everything a command does, without Typer."""
