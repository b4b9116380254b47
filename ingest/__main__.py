"""``python -m wattline.ingest`` runs the ``wattline`` command."""

from wattline.ingest.app.cli import main

main()
