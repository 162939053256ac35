"""The `fastnn` command line. Subcommands: info."""
from __future__ import annotations

import argparse
import sys

import fastnn


def cmd_info(args) -> int:
    for key, value in fastnn.build_info().items():
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key:15} {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastnn", description="Fast neural networks on CPUs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="show version, compiler, OpenMP, SIMD path and threads")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
