"""Command line: ``python -m fastnet article`` prints the worked example."""

import argparse


def main(argv=None):
    """Entry point of ``python -m fastnet`` and the ``fastnet`` script."""
    parser = argparse.ArgumentParser(prog="fastnet", description=__doc__)
    parser.add_argument("command", nargs="?", default="article", choices=["article"],
                        help="article: walk through the blog's example on every backend")
    parser.parse_args(argv)
    from fastnet.article import walkthrough
    print(walkthrough())


if __name__ == "__main__":
    main()
