import sys

from xbyol.cli import main

sys.exit(main())
