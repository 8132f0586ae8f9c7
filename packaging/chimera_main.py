"""PyInstaller's entry point: the same `main()` as the `chimera` console script."""

import sys

from chimera_tk.cli import main

if __name__ == "__main__":
    sys.exit(main())
