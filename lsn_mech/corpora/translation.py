"""Translation-instruction data: parallel pairs → prompted examples → token batches.

The LANDeRMT recipe (§4.1): every sentence pair gets one of ten translation
instruction templates, drawn at random, and the model is finetuned on the target side
only. Here:

* `parallel_dataset` / `from_hub_parallel` turn any parallel ``datasets.Dataset``
  into the four columns ``src_lang, tgt_lang, src_text, tgt_text`` (the columns
  `lsn_mech.corpora.bible_pairs` already has);
* `translation_examples` draws one of `TRANSLATION_TEMPLATES` per pair and adds the
  columns ``prompt``, ``target``, ``template_id`` and ``template``;
* `tokenize_translation` / `translation_batches` give Hugging Face-style
  ``input_ids``, ``attention_mask``, ``labels`` with the loss on the target only.

Every prompt ends with a newline and every target is one line followed by ``"\\n"``,
so greedy decoding can stop at the first newline (see
`lsn_mech.evaluate.translate`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from datasets import Dataset
from jaxtyping import Int64
from torch import Tensor

from lsn_mech.corpora.corpus import column_list, hash_unit
from lsn_mech.corpora.prompt_target import IGNORE_INDEX as IGNORE_INDEX
from lsn_mech.corpora.prompt_target import (
    PromptTargetError,
    TextExample,
    encode_all,
    target_only_example,
    token_ids,
    warned_padded_batches,
)
from lsn_mech.corpora.prompt_target import fit_prompt_target as fit_any_prompt_target
from lsn_mech.corpora.prompt_target import pad_right as pad_right
from lsn_mech.corpora.prompt_target import shuffled_padded_batches as shuffled_padded_batches
from lsn_mech.errors import EmptyCorpusError

#: Columns every parallel dataset is normalised to.
PAIR_COLUMNS = ("src_lang", "tgt_lang", "src_text", "tgt_text")
#: Columns `translation_examples` adds.
EXAMPLE_COLUMNS = ("prompt", "target", "template_id", "template")
#: English names of the languages of the embedded Bible (and a few more); other codes
#: are shown as the code itself.
LANGUAGE_NAMES: dict[str, str] = {
    "ar": "Arabic",
    "bn": "Bengali",
    "cs": "Czech",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fa": "Persian",
    "fr": "French",
    "hi": "Hindi",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sw": "Swahili",
    "tl": "Tagalog",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "vi": "Vietnamese",
    "zh": "Chinese",
}


class TranslationDataError(PromptTargetError):
    """Parallel data or translation examples lack a column or hold unusable values."""


def language_name(code: str) -> str:
    """The English name of an ISO 639-1 code (the code itself when unknown)."""
    return LANGUAGE_NAMES.get(code, LANGUAGE_NAMES.get(code.split("-")[0].split("_")[0], code))


def one_line(text: str) -> str:
    """``text`` with every line break turned into a space and outer spaces stripped.

    A target must be exactly one line, because decoding stops at the first newline.
    """
    return " ".join(text.splitlines()).strip() if text else ""


@dataclasses.dataclass(frozen=True)
class TranslationTemplate:
    """A translation instruction in the style of the FLAN v2 translation templates.

    ``prompt`` is a ``str.format`` pattern over ``{src_name}``, ``{tgt_name}`` and
    ``{src}``; it must end with a newline, so that the target (``tgt + "\\n"``) is
    exactly the next line.
    """

    name: str
    prompt: str

    def __post_init__(self) -> None:
        if not self.prompt.endswith("\n") or "{src}" not in self.prompt:
            raise TranslationDataError(
                f"Template {self.name!r} must contain '{{src}}' and end with '\\n' so that "
                f"the target is the next line; got {self.prompt!r}."
            )

    def render(self, src: str, src_lang: str, tgt_lang: str) -> str:
        """The prompt for one source sentence."""
        return render_prompt(self.prompt, src, src_lang, tgt_lang)


def render_prompt(pattern: str, src: str, src_lang: str, tgt_lang: str) -> str:
    """Fill a template pattern (see `TranslationTemplate`)."""
    return pattern.format(
        src=src, src_name=language_name(src_lang), tgt_name=language_name(tgt_lang)
    )


#: Ten instruction templates (own wording, after the FLAN v2 translation templates).
TRANSLATION_TEMPLATES: tuple[TranslationTemplate, ...] = (
    TranslationTemplate(
        "from-to", "Translate the following sentence from {src_name} to {tgt_name}.\n{src}\n"
    ),
    TranslationTemplate("source-first", "{src}\n\nTranslate this sentence into {tgt_name}.\n"),
    TranslationTemplate(
        "how-say", "How would you say the following {src_name} sentence in {tgt_name}?\n{src}\n"
    ),
    TranslationTemplate("labels", "{src_name}: {src}\n{tgt_name} translation:\n"),
    TranslationTemplate("short", "Translate to {tgt_name}:\n\n{src}\n"),
    TranslationTemplate(
        "here-is", "Here is a sentence in {src_name}: {src}\nWrite it in {tgt_name}.\n"
    ),
    TranslationTemplate(
        "next-line",
        "Source ({src_name}): {src}\nGive the {tgt_name} translation on the next line.\n",
    ),
    TranslationTemplate(
        "render", "Please render this {src_name} text in {tgt_name}.\n\n{src}\n\nTranslation:\n"
    ),
    TranslationTemplate(
        "version", 'What is the {tgt_name} version of this {src_name} sentence?\n"{src}"\n'
    ),
    TranslationTemplate(
        "above", "{src}\n\nThe sentence above is in {src_name}. Translate it into {tgt_name}.\n"
    ),
)


# ----- parallel data ------------------------------------------------------------------
def _require_rows(dataset: Any, what: str) -> None:
    if not isinstance(dataset, Dataset):
        raise TranslationDataError(
            f"{what} must be a datasets.Dataset; got {type(dataset).__name__}. Build one "
            "with datasets.Dataset.from_dict({...}) or lsn_mech.corpora.bible_pairs(...)."
        )
    if len(dataset) == 0:
        raise EmptyCorpusError(
            f"{what} has no rows. Check the split and the filters (e.g. bible_pairs(..., "
            "split='train') and max_pairs)."
        )


def _require_columns(dataset: Dataset, columns: Sequence[str], fix: str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise TranslationDataError(
            f"The dataset lacks the column(s) {missing} (it has "
            f"{', '.join(dataset.column_names) or 'none'}). {fix}"
        )


def _side_texts(
    dataset: Dataset, src_lang: str, tgt_lang: str, src_column: str | None, tgt_column: str | None
) -> tuple[list[Any], list[Any]]:
    """The source and target texts of a parallel dataset, whatever its layout."""
    names = dataset.column_names
    if src_column is not None or tgt_column is not None:
        if src_column is None or tgt_column is None:
            raise TranslationDataError("Pass both src_column=... and tgt_column=..., or neither.")
        _require_columns(dataset, [src_column, tgt_column], "Check src_column / tgt_column.")
        return column_list(dataset, src_column), column_list(dataset, tgt_column)
    if "translation" in names:
        pairs = column_list(dataset, "translation")
        keys = set(pairs[0]) if pairs and isinstance(pairs[0], Mapping) else set()
        missing = [lang for lang in (src_lang, tgt_lang) if lang not in keys]
        if missing:
            raise TranslationDataError(
                f"The 'translation' column has the keys {sorted(keys)}, not {missing}; "
                "pass src_lang/tgt_lang as they are spelled there."
            )
        return [p[src_lang] for p in pairs], [p[tgt_lang] for p in pairs]
    for src_name, tgt_name in ((src_lang, tgt_lang), ("src_text", "tgt_text")):
        if src_name in names and tgt_name in names and src_name != tgt_name:
            return column_list(dataset, src_name), column_list(dataset, tgt_name)
    raise TranslationDataError(
        f"Cannot find the two sides in the columns {', '.join(names)}: expected a "
        f"'translation' column of dicts {{{src_lang!r}: ..., {tgt_lang!r}: ...}}, columns "
        f"named {src_lang!r} and {tgt_lang!r}, or 'src_text'/'tgt_text'. Otherwise pass "
        "src_column=... and tgt_column=..."
    )


def parallel_dataset(
    dataset: Dataset,
    *,
    src_lang: str,
    tgt_lang: str,
    src_column: str | None = None,
    tgt_column: str | None = None,
) -> Dataset:
    """Normalise a parallel dataset to the columns ``src_lang, tgt_lang, src_text, tgt_text``.

    Accepted layouts (tried in this order): ``src_column``/``tgt_column`` when given;
    a WMT/OPUS-style ``translation`` column of ``{lang: text}`` dicts; two columns named
    like the languages; ``src_text``/``tgt_text``. Texts are made one line each
    (`one_line`) and pairs with an empty side are dropped; other columns are dropped.

    Raises:
        TranslationDataError: no layout matches (the message lists the columns).
        EmptyCorpusError: no rows, or no pair with two non-empty sides.
    """
    _require_rows(dataset, "The parallel dataset")
    sources, targets = _side_texts(dataset, src_lang, tgt_lang, src_column, tgt_column)
    kept = [
        (one_line(str(s)), one_line(str(t)))
        for s, t in zip(sources, targets)
        if s is not None and t is not None
    ]
    kept = [(s, t) for s, t in kept if s and t]
    if not kept:
        raise EmptyCorpusError(
            f"No {src_lang}-{tgt_lang} pair has two non-empty sides; check the columns "
            "and languages."
        )
    import pyarrow as pa
    from datasets.fingerprint import generate_random_fingerprint

    table = pa.table(
        {
            "src_lang": [src_lang] * len(kept),
            "tgt_lang": [tgt_lang] * len(kept),
            "src_text": [s for s, _ in kept],
            "tgt_text": [t for _, t in kept],
        }
    )
    return Dataset(table, fingerprint=generate_random_fingerprint())


def from_hub_parallel(
    path: str,
    name: str | None,
    split: str,
    src_lang: str,
    tgt_lang: str,
    *,
    src_column: str | None = None,
    tgt_column: str | None = None,
    max_pairs: int | None = None,
    revision: str | None = None,
    probe_timeout: float = 3.0,
    **load_kwargs: Any,
) -> Dataset:
    """A parallel dataset from the Hugging Face hub (e.g. ``"wmt/wmt16", "de-en", "test"``).

    ``max_pairs`` streams only the first pairs (no full download). The result is
    normalised by `parallel_dataset`.

    Raises:
        HubUnavailableError: the hub cannot be reached (fails within ``probe_timeout``
            seconds, or at once with ``HF_HUB_OFFLINE=1`` and nothing cached).
    """
    from pathlib import Path

    from lsn_mech.corpora.local import (
        datasets_offline,
        hub_unavailable_error,
        load_hub_dataset,
        offline_env_set,
        probe_hub,
    )

    if max_pairs is not None and max_pairs < 1:
        raise TranslationDataError(f"max_pairs must be positive or None; got {max_pairs}.")
    if not Path(path).expanduser().exists():
        if offline_env_set() and not datasets_offline():
            raise hub_unavailable_error(path, "HF_HUB_OFFLINE is set")
        if not datasets_offline():
            probe_hub(path, probe_timeout)
    streaming = max_pairs is not None
    data = load_hub_dataset(
        path, name, split=split, revision=revision, streaming=streaming, **load_kwargs
    )
    if streaming:
        data = Dataset.from_list(list(itertools.islice(iter(data), max_pairs)))
    return parallel_dataset(
        data, src_lang=src_lang, tgt_lang=tgt_lang, src_column=src_column, tgt_column=tgt_column
    )


# ----- templated examples ---------------------------------------------------------------
def template_index(seed: int, src_lang: str, tgt_lang: str, src: str, tgt: str, n: int) -> int:
    """The template drawn for one pair: a seeded hash of its content, so the draw does
    not depend on the row order (identical pairs get the same template)."""
    key = f"translation-template\x00{src_lang}\x00{tgt_lang}\x00{src}\x00{tgt}"
    return min(int(hash_unit(seed, key) * n), n - 1)


def _resolve_template(
    template: TranslationTemplate | int | None, templates: Sequence[TranslationTemplate]
) -> tuple[Sequence[TranslationTemplate], int | None]:
    if not templates:
        raise TranslationDataError("templates is empty; pass at least one TranslationTemplate.")
    if template is None:
        return templates, None
    if isinstance(template, int):
        if not 0 <= template < len(templates):
            raise TranslationDataError(
                f"template={template} is out of range; there are {len(templates)} templates."
            )
        return templates, template
    if template in templates:
        return templates, list(templates).index(template)
    return (template,), 0


def translation_examples(
    pairs: Dataset,
    *,
    seed: int = 0,
    templates: Sequence[TranslationTemplate] = TRANSLATION_TEMPLATES,
    template: TranslationTemplate | int | None = None,
) -> Dataset:
    """Prompted translation examples: one template per pair, drawn with ``seed``.

    Adds the columns ``prompt`` (ends with ``"\\n"``), ``target`` (``tgt_text + "\\n"``),
    ``template_id`` (index into ``templates``) and ``template`` (the pattern itself, so
    that few-shot prompts can be re-rendered without the template list). ``template``
    fixes one template for every pair (an index or a `TranslationTemplate`; one that
    is not in ``templates`` gets ``template_id`` 0). Line breaks inside a text become
    spaces, so the target is one line.

    Raises:
        TranslationDataError: a column of ``src_lang, tgt_lang, src_text, tgt_text`` is
            missing (use `parallel_dataset` first).
        EmptyCorpusError: no rows.
    """
    _require_rows(pairs, "The pairs")
    _require_columns(
        pairs,
        PAIR_COLUMNS,
        "Normalise the data first with lsn_mech.corpora.parallel_dataset(dataset, "
        "src_lang=..., tgt_lang=...).",
    )
    templates, fixed = _resolve_template(template, templates)
    columns = {c: column_list(pairs, c) for c in PAIR_COLUMNS}
    prompts, targets, ids, patterns = [], [], [], []
    for sl, tl, src, tgt in zip(*(columns[c] for c in PAIR_COLUMNS)):
        src, tgt = one_line(str(src)), one_line(str(tgt))
        index = fixed
        if index is None:
            index = template_index(seed, sl, tl, src, tgt, len(templates))
        chosen = templates[index]
        prompts.append(chosen.render(src, sl, tl))
        targets.append(tgt + "\n")
        ids.append(index)
        patterns.append(chosen.prompt)
    table = pairs.remove_columns([c for c in EXAMPLE_COLUMNS if c in pairs.column_names])
    table = table.with_format("arrow")[:]
    for name, values in zip(EXAMPLE_COLUMNS, (prompts, targets, ids, patterns)):
        table = table.append_column(name, _arrow(values))
    from lsn_mech.provenance import stable_hash

    identity = (getattr(pairs, "_fingerprint", None), seed, [t.prompt for t in templates], fixed)
    return Dataset(table, fingerprint=stable_hash("translation_examples", identity))


def _arrow(values: list[Any]) -> Any:
    import pyarrow as pa

    return pa.array(values, type=pa.int64() if values and isinstance(values[0], int) else None)


# ----- tokenisation ---------------------------------------------------------------------
# The task-free part (`TextExample`, `target_only_example`, `pad_right`, `IGNORE_INDEX`,
# `shuffled_padded_batches`) lives in `lsn_mech.corpora.prompt_target`; its names stay
# importable from here.
def _rows(examples: Dataset | Sequence[Mapping[str, Any]]) -> list[TextExample]:
    if isinstance(examples, Dataset):
        _require_rows(examples, "The examples")
        _require_columns(
            examples,
            ("prompt", "target"),
            "Build examples with lsn_mech.corpora.translation_examples(pairs).",
        )
        names = examples.column_names
        cols = {
            c: column_list(examples, c) if c in names else [None] * len(examples)
            for c in ("prompt", "target", "template", "src_text", "src_lang", "tgt_lang")
        }
        items: list[Mapping[str, Any]] = [dict(zip(cols, v)) for v in zip(*cols.values())]
    else:
        items = list(examples)
        if not items:
            raise EmptyCorpusError("No examples to tokenise.")
    rows = []
    for item in items:
        if "prompt" not in item or "target" not in item:
            raise TranslationDataError(
                "Each example needs 'prompt' and 'target'; build them with "
                "lsn_mech.corpora.translation_examples(pairs)."
            )
        rows.append(
            TextExample(
                str(item["prompt"]),
                str(item["target"]),
                item.get("template"),
                item.get("src_text"),
                item.get("src_lang"),
                item.get("tgt_lang"),
            )
        )
    return rows


def _shorten_source(
    tokenizer: Any, row: TextExample, prompt_ids: list[int], budget: int
) -> list[int] | None:
    """Prompt ids with the source cut at the end so the prompt has at most ``budget``
    tokens; ``None`` when the row has no template to re-render or no room."""
    if row.pattern is None or row.src_text is None or row.src_lang is None or row.tgt_lang is None:
        return None
    src_ids = token_ids(tokenizer, [one_line(row.src_text)], False)[0]
    keep = len(src_ids) - (len(prompt_ids) - budget)
    while keep >= 0:
        text = tokenizer.decode(src_ids[:keep]).rstrip("\ufffd") if keep else ""
        ids = token_ids(
            tokenizer, [render_prompt(row.pattern, text, row.src_lang, row.tgt_lang)], True
        )
        if len(ids[0]) <= budget:
            return ids[0]
        keep -= max(1, len(ids[0]) - budget)
    return None


def fit_prompt_target(
    tokenizer: Any, row: TextExample, prompt_ids: list[int], target_ids: list[int], max_length: int
) -> tuple[list[int], list[int], bool]:
    """Truncate one example's token ids to ``max_length`` tokens in all.

    The source sentence is cut first (the prompt re-rendered from the example's
    template); without a template, or when the target alone leaves no room, the target
    is cut at its end (keeping one token) and the prompt's start after BOS dropped
    (`lsn_mech.corpora.prompt_target.fit_prompt_target` with this module's shortener).
    Returns the prompt ids, the target ids, and whether anything was cut.
    """
    return fit_any_prompt_target(
        tokenizer, row, prompt_ids, target_ids, max_length, shorten_prompt=_shorten_source
    )


def _encode_rows(
    tokenizer: Any, rows: list[TextExample], max_length: int, append_eos: bool
) -> tuple[list[dict[str, Tensor]], int]:
    prompts = token_ids(tokenizer, [r.prompt for r in rows], True)
    targets = token_ids(tokenizer, [r.target for r in rows], False)
    eos = getattr(tokenizer, "eos_token_id", None)
    if append_eos:
        if eos is None:
            raise TranslationDataError("append_eos=True but the tokenizer has no eos_token_id.")
        targets = [[*t, int(eos)] for t in targets]
    out, truncated = [], 0
    for row, p_ids, t_ids in zip(rows, prompts, targets):
        if not t_ids:
            raise TranslationDataError(f"Empty target for prompt {row.prompt[:60]!r}.")
        p_ids, t_ids, cut = fit_prompt_target(tokenizer, row, p_ids, t_ids, max_length)
        truncated += cut
        out.append(target_only_example(p_ids, t_ids))
    return out, truncated


def tokenize_translation(
    tokenizer: Any,
    examples: Dataset | Sequence[Mapping[str, Any]],
    *,
    max_length: int = 256,
    append_eos: bool = False,
) -> list[dict[str, Tensor]]:
    """Token ids of each example, with labels on the target side only.

    Each item holds 1-D ``input_ids``, ``attention_mask`` (ones) and ``labels`` (int64):
    the prompt is tokenised as at inference (with the tokenizer's special tokens, i.e.
    BOS when it adds one) and the target ``tgt + "\\n"`` separately without them, then
    the two are concatenated. ``labels`` equals ``input_ids`` on the target tokens
    (the final newline included) and ``-100`` on BOS and the prompt; Hugging Face
    models shift labels themselves. EOS is not appended by default: decoding stops at
    the newline, and a few-shot prompt continues after it with the next example, so
    the newline is the one terminator in both uses (``append_eos=True`` adds EOS after
    it, with a label).

    Truncation to ``max_length`` tokens: the end of the source sentence is cut and the
    prompt re-rendered from its template, so the instruction stays whole; only when the
    target alone leaves no room for the prompt is the target cut at its end (keeping at
    least one token) and the start of the prompt after BOS dropped. A warning reports
    how many examples were truncated.
    """
    return encode_all(
        tokenizer,
        _rows(examples),
        _encode_rows,
        max_length=max_length,
        append_eos=append_eos,
        error=TranslationDataError,
        warning="{truncated} of {total} translation examples were longer than "
        "max_length={max_length} tokens and were truncated (source first).",
    )


def translation_batches(
    tokenizer: Any,
    examples: Dataset | Sequence[Mapping[str, Any]],
    *,
    batch_size: int = 8,
    max_length: int = 256,
    shuffle: bool = True,
    seed: int = 0,
    append_eos: bool = False,
) -> Iterator[dict[str, Int64[Tensor, "batch seq"]]]:
    """Right-padded training batches (see `tokenize_translation` for the labels).

    Examples are tokenised lazily, one batch at a time, so memory does not grow with
    the dataset. ``shuffle`` permutes the order with ``random.Random(seed)``; the last
    batch may be smaller.
    """
    yield from warned_padded_batches(
        tokenizer,
        _rows(examples),
        _encode_rows,
        batch_size=batch_size,
        max_length=max_length,
        shuffle=shuffle,
        seed=seed,
        append_eos=append_eos,
        error=TranslationDataError,
        warning="{truncated} of {total} translation examples were truncated to "
        "max_length={max_length} tokens (source first).",
    )
