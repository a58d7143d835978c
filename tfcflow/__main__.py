import sys

from tfcflow.cli import main

sys.exit(main())
