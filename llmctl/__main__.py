"""`python -m llmctl` (what torchrun and `accelerate launch -m` start)."""

from llmctl.cli import main

if __name__ == "__main__":
    main()
