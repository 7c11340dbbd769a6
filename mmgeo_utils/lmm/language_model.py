"""The language model: any ``transformers`` ``AutoModelForCausalLM``, built small or loaded.

On ``smoke``, ``cpu`` and ``gpu`` there are no hub weights (no internet, and a pretrained LM would
bring knowledge our encoders are meant to supply), so the LM is a Qwen2 architecture of a few
million parameters built from a config (:func:`build_lm`) and pre-trained on geometry text (stage
0). On ``paper`` it is a hub model or a local folder in the same format (:func:`load_lm`). The
wrapper only needs ``get_input_embeddings()`` and ``inputs_embeds``, which every causal LM in
transformers has, so the two paths are one code path.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

from transformers import AutoModelForCausalLM, PreTrainedModel, Qwen2Config
from transformers.utils import logging as hf_logging

from ..profiles import LMMSizes


@contextlib.contextmanager
def quiet():
    """No per-file progress bars while a small LM is loaded or saved, and no warning of peft's about a
    transformers attribute it reads (``is_gradient_checkpointing``, deprecated in transformers 5)."""

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def build_lm(sizes: LMMSizes, tokenizer) -> PreTrainedModel:
    """A randomly initialised Qwen2 LM of the profile's size, its vocabulary the tokenizer's.

    Dropout stays at zero (Qwen2's default): one seed, one model, and a resumed run equals an
    uninterrupted one bit for bit. Input and output embeddings are not tied: with a vocabulary of about
    a thousand tokens the second table costs little, and untied tables save to safetensors as they are
    (the training checkpoint refuses tensors that share memory).
    """
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=sizes.lm_hidden,
        num_hidden_layers=sizes.lm_layers,
        num_attention_heads=sizes.lm_heads,
        num_key_value_heads=sizes.lm_heads,
        intermediate_size=sizes.lm_intermediate,
        max_position_embeddings=sizes.context_length,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return AutoModelForCausalLM.from_config(config)


def load_lm(name_or_folder: str | Path, tokenizer=None) -> PreTrainedModel:
    """``AutoModelForCausalLM.from_pretrained``: a local folder (checked here) or a hub name (paper).

    The embedding table grows when the tokenizer gained ``<image>`` after the LM was saved.
    """
    path = Path(name_or_folder)
    local = path.exists() or str(name_or_folder).startswith((".", "/")) or str(name_or_folder).count("/") != 1
    if local and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"LM folder {path} not found or holds no config.json; give a folder written by "
            "save_pretrained or a hub name such as Qwen/Qwen2.5-0.5B-Instruct"
        )
    with quiet():
        lm = AutoModelForCausalLM.from_pretrained(str(name_or_folder))
    if tokenizer is not None and lm.get_input_embeddings().num_embeddings < len(tokenizer):
        lm.resize_token_embeddings(len(tokenizer))
    return lm


def count_parameters(lm) -> int:
    return sum(p.numel() for p in lm.parameters())
