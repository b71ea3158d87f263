"""`python -m shared.devstack run` (what `make run` and `fileshare run` run)."""

import argparse
import sys

from shared.devstack.run import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.devstack", description="the development stack (not part of the production image)"
    )
    parser.add_argument("command", choices=["run"], help="start the embedded stack and the five services")
    parser.parse_args(argv)
    return run()


if __name__ == "__main__":
    sys.exit(main())
