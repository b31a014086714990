"""The ``allocate`` console script: the command line of ``allocate-cli``, run in-process."""

import signal
import sys
from typing import NoReturn

from allocate._allocate import _cli_main


def main() -> NoReturn:
    """Runs ``allocate`` with this process's arguments and exits with its status."""
    # The command line handles Ctrl-C itself (it cancels a waiting request, releases a lease
    # it holds): Python's handler would raise KeyboardInterrupt after it returned.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(_cli_main(["allocate", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
