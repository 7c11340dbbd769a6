"""Argument types and options shared by the ``mmgeo`` commands: each bad value gets argparse's one-line error."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..profiles import PROFILES


def _int_at_least(low: int, what: str):
    """An argparse type: an integer ≥ ``low``, else an error that argparse prefixes with the option's name."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value

    parse.__name__ = what
    return parse


NON_NEGATIVE = _int_at_least(0, "a non-negative integer")
POSITIVE = _int_at_least(1, "a positive integer (leave the option out for the default)")
IMAGE_SIZE = _int_at_least(16, "an image size of at least 16 pixels")


def POSITIVE_FLOAT(text: str) -> float:
    """A finite number > 0: ``--lr inf`` or ``--hard-weight nan`` would train a NaN model."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def _add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        default=None,
        help=f"one of {', '.join(PROFILES)} (default: $MMGEO_PROFILE, else gpu with CUDA, else cpu)",
    )


def _check_writable(path: Path) -> None:
    """A clear error now if ``path`` cannot be written: its folder is made and a probe file written in it."""
    import tempfile  # local: keeps `mmgeo --help` fast

    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give a file name, e.g. {path / 'eval.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise ValueError(f"--out {path} cannot be written ({e.strerror or e}); nothing was evaluated") from None
