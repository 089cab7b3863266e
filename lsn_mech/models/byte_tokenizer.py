"""A byte-level tokenizer for the tiny test models: covers every script, needs no training."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)


def build_byte_tokenizer(directory: str | Path) -> PreTrainedTokenizerBase:
    """Write a 260-token byte-level tokenizer (4 specials + 256 bytes) and load it back.

    The tokenizer prepends ``<bos>`` like Gemma's and Llama's do. It is saved and
    reloaded because TransformerLens reads ``name_or_path`` from a tokenizer, which
    an in-memory tokenizer lacks.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from tokenizers.pre_tokenizers import ByteLevel

    directory = Path(directory)
    if not (directory / "tokenizer.json").exists():
        vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
        for symbol in sorted(ByteLevel.alphabet()):
            vocab[symbol] = len(vocab)
        core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        core.decoder = decoders.ByteLevel()
        core.post_processor = processors.TemplateProcessing(
            single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", BOS_ID)]
        )
        fast = PreTrainedTokenizerFast(
            tokenizer_object=core,
            bos_token="<bos>",
            eos_token="<eos>",
            pad_token="<pad>",
            unk_token="<unk>",
        )
        directory.mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(str(directory))
    return AutoTokenizer.from_pretrained(str(directory))
