import sys

from imgtool.cli.app import main

sys.exit(main())
