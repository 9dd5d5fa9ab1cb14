import sys

from crmlib.cli import main

sys.exit(main())
