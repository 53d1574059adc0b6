"""`python -m training` is `python -m training.run`."""

import sys

from training.run import main

sys.exit(main())
