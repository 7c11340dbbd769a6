"""A small BPE for the built-from-config LM, trained with Hugging Face ``tokenizers`` on the course's text.

Why not open_clip's tokenizer: its 49,408 entries would make the embedding table larger than a
few-million-parameter LM, it lower-cases (``AB`` and ``ab`` are one token, but a point is a capital),
and it merges letters with words. This one keeps case, gives every capital letter its own token (a
point name ``ABC`` is the three letters the diagram shows next to its points, so ``∠ABC`` and
``AB ∥ CD`` share them), and splits numbers into single digits (``37.5`` is ``3 7 . 5``: an LM of
this size can then learn digits once instead of hundreds of number tokens). Byte-level, so every
symbol of the captions (∠ ∥ ⟂ △ ⊙ °) round-trips exactly.

The result is a ``PreTrainedTokenizerFast`` saved with ``save_pretrained``, so
``AutoTokenizer.from_pretrained(folder)`` loads it like any hub tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import transformers
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

IMAGE_TOKEN = "<image>"
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS, IMAGE_TOKEN]


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, out_dir: Path | str | None = None
) -> PreTrainedTokenizerFast:
    """A byte-level BPE of ``vocab_size`` entries over ``texts``; saved to ``out_dir`` when given."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("[A-Z]"), behavior="isolated"),  # every capital alone: point names
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        extra_special_tokens={"image_token": IMAGE_TOKEN} if _supports_extra() else None,
    )
    if not _supports_extra():
        fast.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def _supports_extra() -> bool:

    return int(transformers.__version__.split(".")[0]) >= 5


def load_tokenizer(folder: Path | str):
    """``AutoTokenizer.from_pretrained(folder)``, with an error naming a missing folder, and ``<image>`` checked."""
    path = Path(folder)
    if not (path / "tokenizer_config.json").is_file() and not (path / "tokenizer.json").is_file():
        if "/" in str(folder) and not path.exists() and str(folder).count("/") == 1 and not str(folder).startswith("."):
            tok = AutoTokenizer.from_pretrained(str(folder))  # a hub name (paper profile)
        else:
            raise FileNotFoundError(
                f"tokenizer folder {path} not found or holds no tokenizer "
                "(tokenizer.json / tokenizer_config.json); train one with stage lm"
            )
    else:
        tok = AutoTokenizer.from_pretrained(str(path))
    return ensure_image_token(tok)


def ensure_image_token(tok):
    """Give a hub tokenizer the ``<image>`` placeholder and a pad token if it lacks them."""
    if IMAGE_TOKEN not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def image_token_id(tok) -> int:
    return tok.convert_tokens_to_ids(IMAGE_TOKEN)
