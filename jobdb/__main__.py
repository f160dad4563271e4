"""``python -m jobdb`` runs the CLI."""

from jobdb.cli.boundary import main

main()
