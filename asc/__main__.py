"""`python -m asc COMMAND`: see asc.cli."""

from asc.cli import cli

if __name__ == "__main__":
    cli()
