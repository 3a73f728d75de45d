"""`python -m unlearn_sweep ...` is `unlearn-sweep ...`."""

import sys

from unlearn_sweep.cli import main

sys.exit(main())
