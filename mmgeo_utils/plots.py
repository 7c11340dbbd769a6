"""One figure style for the whole course, and one place figures are saved.

Figures go to ``figures/<profile>/<name>.png`` with the provenance (profile, seed,
commit, device) written into the PNG's metadata, so a figure in the README names
the run that drew it. A figure whose pixels did not change is left as it is, so a
course run that reproduces the committed figures leaves ``git status`` clean (the
commit it names is then the first one that drew exactly these pixels).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

from .profiles import Profile, get_profile
from .repro import REPO_ROOT, provenance

PALETTE = "colorblind"


def set_style() -> None:
    """The course's seaborn style: white grid, colourblind palette, readable fonts."""
    import seaborn as sns  # local: seaborn pulls in pandas and scipy, which only plotting needs

    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    matplotlib.rcParams.update(
        {"figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight", "axes.titleweight": "bold"}
    )


def figures_dir(profile: Profile | str | None = None, root: Path | None = None) -> Path:
    """``figures/<profile>/``; ``$MMGEO_FIGURES_DIR`` overrides the root (tests use it)."""
    root = Path(root or os.environ.get("MMGEO_FIGURES_DIR") or REPO_ROOT / "figures")
    return root / get_profile(profile).name


def save_fig(
    fig, name: str, *, profile: Profile | str | None = None, seed: int | None = None, root: Path | None = None
) -> Path:
    """Save ``fig`` as ``figures/<profile>/<name>.png`` with its provenance in the metadata."""
    profile = get_profile(profile)
    path = figures_dir(profile, root) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    prov = provenance(profile, seed)
    meta = {
        "Software": "mmgeo",
        "Comment": f"profile={prov['profile']} seed={seed} commit={prov['commit']} device={prov['device']}",
    }
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=meta)
    if path.exists() and _same_pixels(path, buf.getvalue()):
        return path
    tmp = path.with_suffix(".png.partial")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return path


def _same_pixels(path: Path, png: bytes) -> bool:
    """Whether the PNG at ``path`` shows exactly the image ``png`` does (metadata aside)."""
    try:
        with Image.open(path) as old, Image.open(io.BytesIO(png)) as new:
            return old.size == new.size and np.array_equal(
                np.asarray(old.convert("RGBA")), np.asarray(new.convert("RGBA"))
            )
    except OSError:  # an unreadable old file is replaced
        return False
