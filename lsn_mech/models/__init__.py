"""Loading models as TransformerLens 4 bridges, the model zoo, and hook-site names."""

from lsn_mech.models.cache import cache_dir
from lsn_mech.models.limits import check_count, check_device, check_window, context_length
from lsn_mech.models.loading import default_device, default_dtype, load_model
from lsn_mech.models.protocol import HookedModel, model_device, model_dtype, model_id
from lsn_mech.models.sites import SITES, HookSites, Site, hook_sites
from lsn_mech.models.zoo import DEFAULT_MODEL, TINY_MODELS, ZOO, build_tiny, byte_tokenizer

__all__ = [
    "DEFAULT_MODEL",
    "SITES",
    "TINY_MODELS",
    "ZOO",
    "HookSites",
    "HookedModel",
    "Site",
    "build_tiny",
    "byte_tokenizer",
    "cache_dir",
    "check_count",
    "check_device",
    "check_window",
    "context_length",
    "default_device",
    "default_dtype",
    "hook_sites",
    "load_model",
    "model_device",
    "model_dtype",
    "model_id",
]
