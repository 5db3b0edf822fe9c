"""``python -m ferrowsgi`` and the ``ferrowsgi`` console script."""

import sys

from ferrowsgi._ferrowsgi import main


def run() -> None:
    """Run the command line with ``sys.argv`` and exit with its status."""
    argv = ["ferrowsgi", *sys.argv[1:]]
    sys.exit(main(argv))


if __name__ == "__main__":
    run()
