"""``python -m edgebot``: the same command line as the ``edgebot`` script."""

from edgebot.cli import main

main(prog_name="edgebot")
