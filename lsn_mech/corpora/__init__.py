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
from lsn_mech.corpora.genre import (
    BIBLE_GENRES,
    BIBLE_LABEL_SETS,
    DEFAULT_BOOK_GENRES,
    GENRE_SPLIT_RULE,
    GENRE_TEMPLATE,
    bible_genre_task,
    book_genre,
    genre_test_books,
)
from lsn_mech.corpora.hub_tasks import (
    QA_COLUMNS,
    QA_TEMPLATE,
    SQUAD_HUB,
    XNLI_HUB,
    XNLI_LABELS,
    XNLI_TEMPLATE,
    XQUAD_CONFIG,
    XQUAD_HUB,
    XQUAD_LANGUAGES,
    HubTaskError,
    QATask,
    qa_prompt,
    xnli,
    xnli_text,
    xquad,
)
from lsn_mech.corpora.local import from_files, from_hub
from lsn_mech.corpora.tasks import ClassificationTask, TaskDataError
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
    "BIBLE_GENRES",
    "BIBLE_LABEL_SETS",
    "DEFAULT_BOOK_GENRES",
    "DEFAULT_EDITIONS",
    "EDITIONS",
    "GENRE_SPLIT_RULE",
    "GENRE_TEMPLATE",
    "LANGUAGE_NAMES",
    "QA_COLUMNS",
    "QA_TEMPLATE",
    "SQUAD_HUB",
    "TRANSLATION_TEMPLATES",
    "XNLI_HUB",
    "XNLI_LABELS",
    "XNLI_TEMPLATE",
    "XQUAD_CONFIG",
    "XQUAD_HUB",
    "XQUAD_LANGUAGES",
    "BibleEdition",
    "ClassificationTask",
    "CorpusArgumentError",
    "HubTaskError",
    "MultilingualCorpus",
    "QATask",
    "TaskDataError",
    "TokenWindows",
    "TranslationDataError",
    "TranslationTemplate",
    "bible",
    "bible_editions",
    "bible_genre_task",
    "bible_languages",
    "bible_pairs",
    "book_genre",
    "concat_windows",
    "from_files",
    "from_hub",
    "from_hub_parallel",
    "genre_test_books",
    "language_name",
    "normalize_verse",
    "parallel_dataset",
    "qa_prompt",
    "test_books",
    "tokenize_translation",
    "tokenize_windows",
    "translation_batches",
    "translation_examples",
    "xnli",
    "xnli_text",
    "xquad",
]
