import sys

from imgtool.cli.main import main

sys.exit(main())
