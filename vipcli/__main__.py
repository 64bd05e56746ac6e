"""`python -m vipcli ...` (and `torchrun -m vipcli ...`): the `vip` command."""

from vipcli.cli.main import run

if __name__ == "__main__":
    run()
