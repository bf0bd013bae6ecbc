"""``python -m tinyconv ...`` runs the command line, like the ``tinyconv`` script."""

import sys

from .app.cli import main

sys.exit(main())
