"""One module per ``rnnbench`` subcommand (see ``rnnbench/cli.py``)."""
