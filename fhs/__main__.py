"""`python -m fhs` runs the `fhs` command."""

from fhs.cli import main

main()
