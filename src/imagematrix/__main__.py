"""`python -m imagematrix`: the `imagematrix` command."""

from imagematrix.cli.app import main

main()
