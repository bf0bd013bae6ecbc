"""``python -m tinyconv ...`` runs the command line, like the ``tinyconv`` script."""

import sys

from .cli import main

sys.exit(main())
