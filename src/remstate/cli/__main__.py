import sys

from remstate.cli import main

sys.exit(main())
