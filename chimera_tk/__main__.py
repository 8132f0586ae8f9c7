import sys

from chimera_tk.cli import main

sys.exit(main())
