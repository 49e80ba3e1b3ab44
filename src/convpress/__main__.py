"""``python -m convpress`` runs the CLI (same as the ``convpress`` command)."""

import sys

from convpress.cli.main import main

sys.exit(main())
