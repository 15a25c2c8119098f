"""`python -m rsic COMMAND`: see rsic/cli.py."""

from rsic.cli import entry

if __name__ == "__main__":
    entry()
