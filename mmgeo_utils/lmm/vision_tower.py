"""The vision tower: a frozen open_clip image tower that yields a grid of tokens, not one vector.

Three towers, one interface (:class:`VisionTower`), chosen by ``--vision``:

=============  ==================================================================================
``RUN``        the image tower of a course run (``runs/<profile>/<RUN>`` or a folder path): CLIP or
               MMCLIP from lessons 04-05, loaded from its ``model.safetensors``
``random``     the same architecture, randomly initialised from the seed: does *training* the
               encoder matter, or only its shape?
``none``       no tower: the *blind* LMM, which measures how much the question text gives away
=============  ==================================================================================

Which tokens (``token_grid``). LLaVA feeds the LM the patch tokens of CLIP's penultimate layer, not
the pooled embedding: a question about one segment needs to know *where* things are. Our ResNet at
96 px ends in a 3 × 3 grid, too coarse to separate two letters, so it offers ``layer3`` (6 × 6 at
96 px, stride 16, the grid lesson 05's correspondence probe reads) and the attention-pooled
embedding the contrastive loss trained (``pooled``), or both (``layer3+pooled``: 37 tokens). A ViT
gives its patch tokens (``patches``). The two kinds of token have different widths, so
:meth:`VisionTower.join` lays them out block-wise (grid features, then zeros; zeros, then the pooled
vector): the projector's first Linear then acts as one Linear per kind, and stays LLaVA's MLP.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from ..clip import MODEL_FILE, load_config, runs_root
from ..clip.models import create_clip, dense_visual_features
from ..profiles import Profile, get_lmm_sizes, get_profile

TOKEN_GRIDS = ("layer3+pooled", "layer3", "pooled", "patches")
SPECIAL_TOWERS = ("random", "none")


def resolve_run(vision: str, profile: Profile | str | None = None) -> Path:
    """The run folder ``vision`` names: a path, or a run name under ``runs/<profile>/``."""

    p = get_profile(profile)
    path = Path(vision)
    candidates = [path] if path.is_absolute() or path.exists() else [runs_root() / p.name / vision, path]
    for c in candidates:
        if c.is_dir():
            if not (c / MODEL_FILE).is_file() or not (c / "config.json").is_file():
                raise FileNotFoundError(
                    f"vision run {c} is not a finished training run (it needs {MODEL_FILE} "
                    "and config.json): finish it with mmgeo train-clip --resume"
                )
            return c
    raise FileNotFoundError(
        f"unknown vision run {vision!r}: not a folder, and not a run under "
        f"{runs_root() / p.name}; give a run of mmgeo train-clip, 'random' or 'none'"
    )


class VisionTower(nn.Module):
    """A frozen open_clip image tower returning ``grid`` (B, G, Cg) and ``pooled`` (B, Cp) features."""

    def __init__(self, visual: nn.Module, token_grid: str, name: str):
        super().__init__()
        if token_grid not in TOKEN_GRIDS:
            raise ValueError(f"unknown token grid {token_grid!r}; known: {', '.join(TOKEN_GRIDS)}")
        is_resnet = hasattr(visual, "attnpool")
        if is_resnet and token_grid == "patches":
            raise ValueError(
                "token grid 'patches' needs a ViT tower; this run's tower is a ResNet "
                "(use layer3+pooled, layer3 or pooled)"
            )
        if not is_resnet and token_grid != "patches":
            raise ValueError(f"token grid {token_grid!r} reads a ResNet's stages; a ViT tower gives 'patches'")
        self.visual, self.token_grid, self.name = visual.eval().requires_grad_(False), token_grid, name

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        v = self.visual
        grid = dense_visual_features(v, images)  # ResNet: layer3; ViT: the last block's patch tokens
        pooled = v.attnpool(v.layer4(grid)) if hasattr(v, "attnpool") else v(images)
        return {"grid": grid.flatten(2).transpose(1, 2), "pooled": pooled}  # grid (B, h*w, C), row-major

    @torch.no_grad()
    def feature_shapes(self, image_size: int) -> dict[str, tuple[int, ...]]:
        out = self(torch.zeros(1, 3, image_size, image_size))
        return {k: tuple(t.shape[1:]) for k, t in out.items()}

    def weights_hash(self) -> str:
        """sha256 of the tower's weights: the feature cache's key, so new weights never reuse old features."""
        h = hashlib.sha256()
        for k, t in sorted(self.visual.state_dict().items()):
            h.update(k.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


def join(features: dict[str, torch.Tensor], token_grid: str) -> torch.Tensor:
    """The (B, N, D) tokens the projector sees, from cached ``grid`` and ``pooled`` features.

    ``layer3+pooled``: the G grid tokens padded with zeros on the right, then the pooled token
    padded on the left, so D = Cg + Cp and each kind has its own columns of the first Linear.
    """
    grid, pooled = features["grid"].float(), features["pooled"].float()
    if token_grid in ("layer3", "patches"):
        return grid
    if token_grid == "pooled":
        return pooled[:, None]
    b, g, cg = grid.shape
    cp = pooled.shape[-1]
    return torch.cat(
        [torch.cat([grid, grid.new_zeros(b, g, cp)], -1), torch.cat([pooled.new_zeros(b, 1, cg), pooled[:, None]], -1)],
        1,
    )


def token_shape(shapes: dict[str, tuple[int, ...]], token_grid: str) -> tuple[int, int]:
    """(number of image tokens, their width) for a tower's feature shapes."""
    (g, cg), (cp,) = shapes["grid"], shapes["pooled"]
    return {"layer3": (g, cg), "patches": (g, cg), "pooled": (1, cp), "layer3+pooled": (g + 1, cg + cp)}[token_grid]


def default_token_grid(profile: Profile | str | None, visual: nn.Module) -> str:
    """The profile's token grid, or ``patches`` for a ViT tower (the only grid a ViT has)."""

    return get_lmm_sizes(profile).token_grid if hasattr(visual, "attnpool") else "patches"


def load_vision_tower(
    vision: str, profile: Profile | str | None = None, *, token_grid: str | None = None, seed: int = 0
) -> VisionTower | None:
    """The tower ``--vision`` names (``None`` for ``none``), frozen, in eval mode, on the CPU.

    A run trained at another image size than the profile's is refused: its attention pool (ResNet) or
    position embedding (ViT) is sized for its own diagrams, and features of resized ones would be
    silently worse.
    """

    p = get_profile(profile)
    if vision == "none":
        return None
    if vision == "random":
        gen_state = torch.get_rng_state()
        torch.manual_seed(seed)
        model = create_clip(p.clip_model, None, image_size=p.image_size)
        torch.set_rng_state(gen_state)
        name = f"random-{p.clip_model}-s{seed}"
    else:
        run = check_vision(vision, p)
        model = create_clip(load_config(run).model, run / MODEL_FILE, image_size=p.image_size)  # type: ignore[arg-type]
        name = run.name
    return VisionTower(model.visual, token_grid or default_token_grid(p, model.visual), name)


def check_vision(vision: str, profile: Profile | str | None = None) -> Path | None:
    """The run folder ``--vision`` names (``None`` for ``none`` / ``random``), refused when unknown, unfinished or
    trained at another image size than the profile's; reads no weights, so a command checks it before training."""

    if vision in ("none", "random"):
        return None
    p = get_profile(profile)
    run = resolve_run(vision, p)
    cfg = load_config(run)
    run_size = get_profile(cfg.profile).image_size
    if run_size != p.image_size:
        raise ValueError(
            f"vision run {run} was trained on {run_size} px diagrams (profile {cfg.profile}); "
            f"profile {p.name} renders {p.image_size} px: train an encoder on {p.name}"
        )
    return run
