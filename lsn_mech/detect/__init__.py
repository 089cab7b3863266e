"""Detectors of language-specific neurons: one function per method, each returning
`lsn_mech.neurons.LanguageNeurons` whose provenance records the method and every parameter.

* `lape`: language activation probability entropy (Tang et al. 2024), reference-code exact;
* `lap`: activation probability above a threshold (the paper's LAP baseline);
* `lave`: LAPE on mean activation values (LAVE);
* `pv` / `pv_from_state_dicts`: parameter variation after per-language finetuning;
* `random`: as many neurons per layer, at random;
* `act_prob_90p`: Mondal et al.'s Activation Probability 90p (from quantile histograms);
* `select_layers` / `taylor_awareness` / `split_awareness`: LANDeRMT's representation
  analysis (Eq. 1–2), Taylor-expansion awareness (Eq. 3–4) and general/specific split (Eq. 5);
* `load_lape_activations` / `activation_stats_from_lape`: read the reference code's
  activation-count files, so the detectors run on statistics collected elsewhere.

Statistics-based detectors take an `lsn_mech.stats.ActivationStats` or a plain
``[layer, d_mlp, lang]`` tensor with ``languages=[...]``.

Each method is also a frozen dataclass of its parameters (a spec) in a registry, so it
can be chosen by name: `available()`, `get(name)`, `run(name, stats, **parameters)`;
a new detector is a spec class decorated with `register` (see `lsn_mech.detect.registry`).
"""

from lsn_mech.detect._common import DetectorInputError, EntropySelection
from lsn_mech.detect.act_prob import (
    ActProbSelection,
    ActProbSpec,
    act_prob_90p,
    act_prob_details,
    act_prob_scores,
)
from lsn_mech.detect.awareness import Awareness, batch_awareness, taylor_awareness
from lsn_mech.detect.awareness_split import (
    AwarenessSplit,
    AwarenessSplitSpec,
    split_awareness,
    split_scores,
)
from lsn_mech.detect.lap_detector import LapSpec, lap
from lsn_mech.detect.lape_detector import LapeSpec, lape, lape_details, lape_scores
from lsn_mech.detect.lape_files import (
    PositiveCountAccumulator,
    activation_stats_from_lape,
    load_lape_activations,
)
from lsn_mech.detect.lave_detector import LaveSpec, lave, lave_details, lave_values
from lsn_mech.detect.layer_selection import (
    LayerSelection,
    layer_activation_means,
    layer_selection_from_means,
    select_layers,
)
from lsn_mech.detect.pv_detector import pv, pv_change_rates, pv_from_rates, pv_from_state_dicts
from lsn_mech.detect.pv_spec import PvSpec
from lsn_mech.detect.random_baseline import RandomSpec, random
from lsn_mech.detect.registry import (
    DETECTORS,
    Detection,
    DetectorParameterError,
    DetectorResult,
    DetectorSpec,
    UnknownDetectorError,
    available,
    get,
    register,
    run,
    spec,
)

__all__ = [
    "DETECTORS",
    "ActProbSelection",
    "ActProbSpec",
    "Awareness",
    "AwarenessSplit",
    "AwarenessSplitSpec",
    "Detection",
    "DetectorInputError",
    "DetectorParameterError",
    "DetectorResult",
    "DetectorSpec",
    "EntropySelection",
    "LapSpec",
    "LapeSpec",
    "LaveSpec",
    "LayerSelection",
    "PositiveCountAccumulator",
    "PvSpec",
    "RandomSpec",
    "UnknownDetectorError",
    "act_prob_90p",
    "act_prob_details",
    "act_prob_scores",
    "activation_stats_from_lape",
    "available",
    "batch_awareness",
    "get",
    "lap",
    "lape",
    "lape_details",
    "lape_scores",
    "lave",
    "lave_details",
    "lave_values",
    "layer_activation_means",
    "layer_selection_from_means",
    "load_lape_activations",
    "pv",
    "pv_change_rates",
    "pv_from_rates",
    "pv_from_state_dicts",
    "random",
    "register",
    "run",
    "select_layers",
    "spec",
    "split_awareness",
    "split_scores",
    "taylor_awareness",
]
