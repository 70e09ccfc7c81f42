"""Command line: ``python -m fastnet`` (or ``fastnet``) COMMAND; ``article``, the
default, prints the worked example.  The commands live in ``fastnet.cli``."""

import sys


def main(argv=None):
    """Entry point of ``python -m fastnet`` and the ``fastnet`` script; returns the exit status."""
    from fastnet.cli import main as run
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
