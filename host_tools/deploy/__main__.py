"""python -m host_tools.deploy {bundle,flash,console}: the Makefile's firmware, flash and console.

Every refusal (no board, a refused config, a failed mpremote session, a bundle folder that cannot
be written) is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from host_tools.deploy.bundle import BOARDS, DEFAULT_OUT, FIRMWARE, BundleError, build, size_table
from host_tools.deploy.flash import DEFAULT_STATION, DeployError, console, flash


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m host_tools.deploy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bundle", help="build build/firmware/<board>/ (mpy-cross) and list sizes")
    b.add_argument("--board", action="append", choices=sorted(BOARDS), help="default: every board")
    b.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: %(default)s")
    f = sub.add_parser("flash", help="copy the bundle, main.py and the config to a board")
    f.add_argument("--port", default="", help="the board's serial port (e.g. /dev/ttyUSB0)")
    f.add_argument("--station", default=str(DEFAULT_STATION), help="default: %(default)s")
    f.add_argument("--board", choices=sorted(BOARDS), help="refuse another board (default: any)")
    f.add_argument("--bundles", type=Path, default=DEFAULT_OUT, help="default: %(default)s")
    f.add_argument("--firmware", type=Path, default=FIRMWARE, help="default: %(default)s")
    f.add_argument(
        "--romfs",
        action="store_true",
        help="the bundle into the board's ROMFS partition (its MicroPython must have one), "
        "main.py and the config to its file system (default: all to the file system)",
    )
    c = sub.add_parser("console", help="the board's REPL (mpremote repl)")
    c.add_argument("--port", default="", help="the board's serial port")
    args = parser.parse_args(argv)
    try:
        if args.command == "bundle":
            for board in args.board or list(BOARDS):
                print(size_table(board, build(board, args.out)))
            return 0
        if args.command == "flash":
            flash(
                args.port,
                args.station,
                args.board or None,
                args.bundles,
                args.firmware,
                romfs=args.romfs,
            )
            return 0
        return console(args.port)
    except (BundleError, DeployError) as err:
        print(f"{args.command}: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # the bundle's folder: a file in the way, not writable, disk full
        print(f"{args.command}: cannot write {err.filename}: {err.strerror}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
