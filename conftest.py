"""Tests and notebooks (nbval) run on the smoke profile and never write into the repository's figures/ or results/."""

import os

os.environ.setdefault("MMGEO_PROFILE", "smoke")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
