"""Multilingual text: the embedded Bible, local files, the hub, and token windows.

```python
import lsn_mech as lm

corpus = lm.corpora.bible(["en", "fr", "zh"])        # MultilingualCorpus, split by book
corpus.texts("fr")                                  # training verses of French
corpus.test("zh")                                   # datasets.Dataset of held-out rows
pairs = lm.corpora.bible_pairs("en", "fr", split="test")
windows = lm.corpora.tokenize_windows(tokenizer, corpus.texts("fr"), window=512)
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
from lsn_mech.corpora.windows import TokenWindows, concat_windows, tokenize_windows

__all__ = [
    "DEFAULT_EDITIONS",
    "EDITIONS",
    "BibleEdition",
    "CorpusArgumentError",
    "MultilingualCorpus",
    "TokenWindows",
    "bible",
    "bible_editions",
    "bible_languages",
    "bible_pairs",
    "concat_windows",
    "from_files",
    "from_hub",
    "normalize_verse",
    "test_books",
    "tokenize_windows",
]
