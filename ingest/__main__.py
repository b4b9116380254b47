"""``python -m wattline.ingest`` runs the ``wattline`` command."""

from wattline.ingest.cli import main

main()
