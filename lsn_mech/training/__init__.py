"""LANDeRMT-style training: selective finetuning and its baselines, conditional awareness
routing and its checkpoints."""

from lsn_mech.training import baselines
from lsn_mech.training.car import RoutingError, pair_awareness, static_car
from lsn_mech.training.classifier import (
    ClassifierConfig,
    ClassifierError,
    TransferClassifier,
    finetune_classifier,
    last_token_index,
)
from lsn_mech.training.export import export_pair, fold_pair, load_routed, save_routed
from lsn_mech.training.routing import ConditionalAwarenessRouting
from lsn_mech.training.selective import (
    TrainingLog,
    TrainingSetupError,
    TrainingStep,
    selective_finetune,
    target_loss,
    trainable_parameter_count,
)
from lsn_mech.training.tracking import REPORT_TO, Tracker, make_tracker

__all__ = [
    "REPORT_TO",
    "ClassifierConfig",
    "ClassifierError",
    "ConditionalAwarenessRouting",
    "RoutingError",
    "Tracker",
    "TrainingLog",
    "TrainingSetupError",
    "TrainingStep",
    "TransferClassifier",
    "baselines",
    "export_pair",
    "finetune_classifier",
    "fold_pair",
    "last_token_index",
    "load_routed",
    "make_tracker",
    "pair_awareness",
    "save_routed",
    "selective_finetune",
    "static_car",
    "target_loss",
    "trainable_parameter_count",
]
