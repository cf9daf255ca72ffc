"""`python -m vepcli` (also what `torchrun -m vepcli` runs)."""

from vepcli.cli import main

if __name__ == "__main__":
    main()
