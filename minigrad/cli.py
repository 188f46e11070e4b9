"""The command-line layer every minigrad command shares: options checked before any work, one-line errors.

    parser = cli.Parser(prog="python -m models.train", description=...)
    parser.add_argument("--lr", type=cli.real(above=0), default=0.05)
    parser.add_argument("--epochs", type=cli.integer(1, 10**6), default=30)
    return cli.run(parser.prog, main, argv)      # CommandError -> "prog: error: ..." on stderr, exit 2

Every option is parsed by a type that refuses what it cannot take: NaN, infinities, negative or zero sizes,
values beyond what any run could use.  A command's own consistency checks (a batch that the data does not
fill, a folder that cannot be written, a size that cannot fit in memory) raise CommandError too, before the
command computes anything.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys


class CommandError(Exception):
    """A bad command line or input: reported as one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse's parser whose errors are CommandError, one line each ("--lr must be ..." rather than
    usage text and "argument --lr: ...")."""

    def error(self, message):
        match = re.match(r"argument (\S+?)(/\S+)?: (.*)$", message, re.S)
        if match:                 # "--lr must be ...", "--model: invalid choice ..."
            rest = match.group(3)
            message = f"{match.group(1)}{'' if rest.startswith(('must', 'has')) else ':'} {rest}"
        raise CommandError(" ".join(message.split()))


def integer(minimum=None, maximum=None):
    """An argparse type: an int in [minimum, maximum]."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {_range('an integer', minimum, maximum)}, got {text!r}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {_range('an integer', minimum, maximum)}, got {value}")
        return value
    return parse


def real(minimum=None, maximum=None, above=None, below=None):
    """An argparse type: a finite float with minimum <= value <= maximum, above < value < below."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {_real_range(minimum, maximum, above, below)}, got {text!r}") \
                from None
        ok = (math.isfinite(value) and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
              and (above is None or value > above) and (below is None or value < below))
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {_real_range(minimum, maximum, above, below)}, got {text}")
        return value
    return parse


def integer_list(minimum=None, maximum=None):
    """An argparse type: comma-separated ints, each in [minimum, maximum] ("8,32" -> [8, 32]); at least one."""
    one = integer(minimum, maximum)

    def parse(text):
        values = [one(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"must be comma-separated integers, got {text!r}")
        return values
    return parse


def name_list(choices, noun="name", none=False):
    """An argparse type: comma-separated names, each one of `choices` ("3a,4e" -> ["3a", "4e"]); with none,
    the word 'none' for an empty list."""
    allowed = ",".join(choices) + (" or none" if none else "")

    def parse(text):
        if none and text.strip() == "none":
            return []
        names = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"has unknown {noun} {', '.join(unknown)}; choose from {allowed}")
        if not names:
            raise argparse.ArgumentTypeError(f"must name at least one {noun}: {allowed}")
        return names
    return parse


def _range(what, minimum, maximum):
    if minimum is not None and maximum is not None:
        return f"{what} from {minimum} to {maximum}"
    if minimum is not None:
        return f"{what} >= {minimum}"
    return f"{what} <= {maximum}" if maximum is not None else what


def _real_range(minimum, maximum, above, below):
    bounds = [f">= {minimum}" if minimum is not None else f"> {above}" if above is not None else "",
              f"<= {maximum}" if maximum is not None else f"< {below}" if below is not None else ""]
    return "a finite number" + (" " + " and ".join(b for b in bounds if b) if any(bounds) else "")


def writable_folder(option, path):
    """Create `path` if needed and check that a file can be written in it; else CommandError naming the option."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as error:
        raise CommandError(f"cannot write to {option} {path}: {error.strerror or error}") from None
    return path


def available_memory():
    """Bytes of memory this process could still use: MemAvailable from /proc/meminfo, else the physical
    memory, else None (unknown: nothing is refused)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def size_text(nbytes):
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes / 2**10:,.1f} KiB"


def check_memory(what, nbytes, available=None):
    """CommandError unless nbytes fit in the memory available: `what` names the options that ask for it."""
    available = available_memory() if available is None else available
    if available is not None and nbytes > available:
        raise CommandError(f"{what} would need about {size_text(nbytes)} of memory; {size_text(available)} is "
                           "available")


def run(prog, main, argv=None):
    """main(argv), with CommandError (and MemoryError, which an estimate can miss) as one line on stderr and
    exit status 2."""
    try:
        return main(argv)
    except CommandError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except MemoryError as error:
        print(f"{prog}: error: out of memory: {error}; ask for less (a smaller batch or image size)", file=sys.stderr)
        return 2
