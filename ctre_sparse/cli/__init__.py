"""The ``ctre-sparse`` command: ``info`` and ``train``.

Each subcommand lives in its own module exposing ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import zipfile

__all__ = ["main", "build_parser"]

_SUBCOMMANDS = ("info", "train", "bench")


def build_parser():
    """Return the top-level argument parser with every subcommand registered."""
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="ctre-sparse",
        description="Truly-sparse kernels and CTRE/SET sparse MLP training.")
    parser.add_argument("--version", action="version", version=f"ctre_sparse {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMANDS:
        module_name = f"{__name__}.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # a missing dependency inside it is a real error
                raise
            logging.getLogger(__name__).debug("subcommand %r not present; skipped", name)
            continue
        module.register(sub)
    return parser


def main(argv=None):
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except (ValueError, RuntimeError, zipfile.BadZipFile) as exc:
        sys.stderr.write(f"ctre-sparse: error: {exc}\n")
        return 1
    except OSError as exc:  # files and network: name the file and the cause, in one line
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        sys.stderr.write(f"ctre-sparse: error: {where}{exc.strerror or exc}\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
