"""Mondal et al.'s qualitative findings on the embedded default (Gemma 3 270M + Bible).

Small budgets (a few thousand statistics tokens, 240 training verses), so the checks are
the robust ones: the genre classifier learns the source language well above chance,
zeroing a language's LAPE neurons raises that language's perplexity (Fig. 1), and
test-time interventions do not consistently improve transfer (Tables 1/4): their mean
change of target accuracy is not a gain of several verses, and not every one is a gain.
The job's task itself transfers: target accuracy's lower 95 % bound clears chance.
"""

from __future__ import annotations

import pytest
import torch

import lsn_mech as lm
from lsn_mech import detect
from lsn_mech import experiments as ex
from lsn_mech.stats import MomentAccumulator, QuantileAccumulator
from lsn_mech.training import ClassifierConfig, finetune_classifier

pytestmark = pytest.mark.slow

LANGUAGES = ["en", "vi", "zh"]


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    model = lm.load_model("gemma-3-270m")
    corpus = lm.corpora.bible(LANGUAGES)
    sites = ("mlp_pre", "mlp_post")
    stats = lm.collect_stats(
        model,
        corpus,
        max_tokens_per_language=3000,
        progress=False,
        accumulators=[MomentAccumulator(sites), QuantileAccumulator(sites)],
    )
    return model, corpus, stats, detect.lape(stats)


def test_zero_deactivation_raises_each_languages_perplexity(setup) -> None:  # type: ignore[no-untyped-def]
    model, corpus, stats, neurons = setup
    result = ex.deactivation_value_ppl(
        model,
        neurons,
        stats,
        corpus,
        values=("zero",),
        languages=LANGUAGES,
        max_tokens_per_language=256,
        progress=False,
    )
    delta = dict(zip(result.languages, result.own("delta")[0], strict=True))
    for language in ("vi", "zh"):  # English's LAPE set is tiny (docs/lape.md)
        assert delta[language] > 0, delta


def test_interventions_do_not_clearly_improve_transfer(setup) -> None:  # type: ignore[no-untyped-def]
    model, _, stats, neurons = setup
    task = lm.corpora.bible_genre_task(
        "en", ["vi", "zh"], train_per_genre=40, test_per_genre=10, seed=0
    )
    config = ClassifierConfig(epochs=1, batch_size=8, max_length=96)
    classifier = finetune_classifier(model, task, config=config, progress=False)
    table = ex.intervention_table(
        classifier,
        task,
        {"lape": neurons},
        stats,
        interventions=("none", "mean", "p90", "zero", "p10"),
        progress=False,
    )
    chance = 100 / len(task.labels)
    source = lm.evaluate.evaluate_classifier(classifier, task.test_set("en"))
    assert source.accuracy > chance + 15, source  # measured: 53 % with six labels
    changes = [d for row in table.delta() for d in row[1:]]  # every intervened cell
    # 60 test verses per language: one verse is 1.7 points
    assert sum(changes) / len(changes) < 5.0, table
    assert not all(d > 0 for d in changes), table


def test_zero_shot_transfer_is_above_chance_on_the_default_task() -> None:
    """The job's task (six genres, the verse framed by `GENRE_TEMPLATE`) transfers: the
    lower 95 % bound of target accuracy clears chance in vi and zh (a reduced budget of
    the job's: 240 training verses, one epoch; 150 test verses per language). On the bare
    verse the same classifier stays at chance in the targets (docs/transfer_tasks.md)."""
    from lsn_mech.intervals import proportion

    model = lm.load_model("gemma-3-270m")
    task = lm.corpora.bible_genre_task(
        "en", ["vi", "zh"], train_per_genre=40, test_per_genre=25, seed=0
    )
    config = ClassifierConfig(
        epochs=1, batch_size=8, max_length=128, template=lm.corpora.GENRE_TEMPLATE
    )
    classifier = finetune_classifier(model, task, config=config, progress=False)
    chance = 1 / len(task.labels)
    accuracy = {}
    for language in ("en", "vi", "zh"):
        rows = task.test_set(language)
        correct = classifier.predict(rows).cpu() == torch.tensor(rows["label"])
        accuracy[language] = proportion(correct)
    assert all(len(task.test_set(lang)) == 150 for lang in ("en", "vi", "zh"))
    assert accuracy["en"].low > chance, accuracy
    for language in ("vi", "zh"):
        assert accuracy[language].low > chance, accuracy
