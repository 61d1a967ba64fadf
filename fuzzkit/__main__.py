import sys

from fuzzkit.cli import main

sys.exit(main())
