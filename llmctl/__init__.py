"""llmctl: fine-tune, evaluate and run transformer models from a terminal or a CI job."""

__version__ = "0.1.0"
