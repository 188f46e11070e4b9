"""python -m minigrad.gradcheck MODEL: every parameter's gradient of a network, checked in float64."""

import sys

from . import main

sys.exit(main())
