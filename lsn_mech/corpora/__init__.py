"""Multilingual text: the embedded Bible, local files, the hub, and token windows.

```python
import lsn_mech as lm

corpus = lm.corpora.bible(["en", "fr", "zh"])        # MultilingualCorpus, split by book
corpus.texts("fr")                                  # training verses of French
corpus.test("zh")                                   # datasets.Dataset of held-out rows
pairs = lm.corpora.bible_pairs("en", "fr", split="test")
windows = lm.corpora.tokenize_windows(tokenizer, corpus.texts("fr"), window=512)
examples = lm.corpora.translation_examples(pairs)   # templated prompts + one-line targets
```
"""

from lsn_mech.corpora.bible import (
    DEFAULT_EDITIONS,
    EDITIONS,
    BibleEdition,
    bible,
    bible_editions,
    bible_languages,
    bible_pairs,
    normalize_verse,
    test_books,
)
from lsn_mech.corpora.corpus import CorpusArgumentError, MultilingualCorpus
from lsn_mech.corpora.local import from_files, from_hub
from lsn_mech.corpora.translation import (
    LANGUAGE_NAMES,
    TRANSLATION_TEMPLATES,
    TranslationDataError,
    TranslationTemplate,
    from_hub_parallel,
    language_name,
    parallel_dataset,
    tokenize_translation,
    translation_batches,
    translation_examples,
)
from lsn_mech.corpora.windows import TokenWindows, concat_windows, tokenize_windows

__all__ = [
    "DEFAULT_EDITIONS",
    "EDITIONS",
    "LANGUAGE_NAMES",
    "TRANSLATION_TEMPLATES",
    "BibleEdition",
    "CorpusArgumentError",
    "MultilingualCorpus",
    "TokenWindows",
    "TranslationDataError",
    "TranslationTemplate",
    "bible",
    "bible_editions",
    "bible_languages",
    "bible_pairs",
    "concat_windows",
    "from_files",
    "from_hub",
    "from_hub_parallel",
    "language_name",
    "normalize_verse",
    "parallel_dataset",
    "test_books",
    "tokenize_translation",
    "tokenize_windows",
    "translation_batches",
    "translation_examples",
]
