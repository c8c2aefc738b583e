"""`python -m switchpoint` runs the CLI."""

from switchpoint.cli import main

main()
