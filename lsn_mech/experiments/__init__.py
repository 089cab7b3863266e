"""The analyses of Tang et al. (ACL 2024) §3.2–3.3, one function and one result type each.

```python
import lsn_mech as lm
from lsn_mech import experiments as ex

dist = ex.layer_distribution(neurons)                 # Fig. 5 / Table 10
ov = ex.overlap(neurons)                              # zh–ja overlap; ov.pairs_sorted()
sweep = ex.selection_sweep(model, stats, corpus, language="fr")          # Fig. 4
steer = ex.steering(model, neurons=neurons, stats=stats, target="zh")   # Tables 4–5
aligned = ex.aligned_verses(corpus, n=200)
emb = ex.sentence_embeddings(model, aligned)          # [lang, layer, text, d_model]
ses = ex.sentence_similarity(model, aligned, embeddings=emb)             # Fig. 6
dom = ex.language_dominance(model, aligned, embeddings=emb)              # Eq. 6 / Fig. 7
proj = ex.neuron_projection(model, aligned, split.general, layer=10)    # LANDeRMT Fig. 12
site = ex.dashboard(model, neurons, stats, corpus, "dashboard")          # index.html
```

Every result is a dataclass that prints as a table, plots with plotly (``.plot()``),
writes CSV (``.to_csv``), saves and loads losslessly as JSON (``.save`` / ``.load``), and
records its `lsn_mech.provenance.Provenance`.
"""

from lsn_mech.experiments._results import ResultFormatError
from lsn_mech.experiments.deactivation_values import (
    DEFAULT_VALUES,
    DeactivationValuePPL,
    deactivation_value_ppl,
    value_label,
)
from lsn_mech.experiments.dominance import (
    LanguageDominance,
    dominance_from_embeddings,
    dominance_matrix,
    dominance_scores,
    language_dominance,
)
from lsn_mech.experiments.embeddings import (
    aligned_verses,
    center_embeddings,
    sentence_embeddings,
)
from lsn_mech.experiments.language_id import (
    LanguageIdentifier,
    UnsupportedLanguageError,
    identify_language,
)
from lsn_mech.experiments.language_sets import (
    BIBLE_SET1,
    BIBLE_SET6,
    SET1,
    SET6,
    LanguageSetDependency,
    compare_language_sets,
    lape_set_dependency,
)
from lsn_mech.experiments.layers import LayerDistribution, layer_distribution
from lsn_mech.experiments.method_overlap import MethodOverlap, method_overlap
from lsn_mech.experiments.neuron_dashboard import Dashboard, dashboard
from lsn_mech.experiments.overlaps import OverlapResult, overlap
from lsn_mech.experiments.projection import (
    NeuronProjection,
    nearest_centroid_accuracy,
    neuron_projection,
    principal_components,
)
from lsn_mech.experiments.prompts import DEFAULT_PROMPTS, default_prompts
from lsn_mech.experiments.selection import DEFAULT_RATIOS, SelectionSweep, selection_sweep
from lsn_mech.experiments.similarity import (
    SentenceSimilarity,
    mean_over_pairs,
    pair_similarity,
    sentence_similarity,
    similarity_from_embeddings,
)
from lsn_mech.experiments.steer import (
    Generation,
    SteeringResult,
    greedy_generate,
    steering,
)
from lsn_mech.experiments.transfer import (
    ALL_INTERVENTIONS,
    INTERVENTIONS,
    SETUPS,
    TransferTable,
    finetuning_table,
    intervention_table,
    intervention_value,
    pool_seeds,
    setup_neurons,
)

__all__ = [
    "ALL_INTERVENTIONS",
    "BIBLE_SET1",
    "BIBLE_SET6",
    "DEFAULT_PROMPTS",
    "DEFAULT_RATIOS",
    "DEFAULT_VALUES",
    "INTERVENTIONS",
    "SET1",
    "SET6",
    "SETUPS",
    "Dashboard",
    "DeactivationValuePPL",
    "Generation",
    "LanguageDominance",
    "LanguageIdentifier",
    "LanguageSetDependency",
    "LayerDistribution",
    "MethodOverlap",
    "NeuronProjection",
    "OverlapResult",
    "ResultFormatError",
    "SelectionSweep",
    "SentenceSimilarity",
    "SteeringResult",
    "TransferTable",
    "UnsupportedLanguageError",
    "aligned_verses",
    "center_embeddings",
    "compare_language_sets",
    "dashboard",
    "deactivation_value_ppl",
    "default_prompts",
    "dominance_from_embeddings",
    "dominance_matrix",
    "dominance_scores",
    "finetuning_table",
    "greedy_generate",
    "identify_language",
    "intervention_table",
    "intervention_value",
    "language_dominance",
    "lape_set_dependency",
    "layer_distribution",
    "mean_over_pairs",
    "method_overlap",
    "nearest_centroid_accuracy",
    "neuron_projection",
    "overlap",
    "pair_similarity",
    "pool_seeds",
    "principal_components",
    "selection_sweep",
    "sentence_embeddings",
    "sentence_similarity",
    "setup_neurons",
    "similarity_from_embeddings",
    "steering",
    "value_label",
]
