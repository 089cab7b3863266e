"""Hook-site names per architecture: the only place that knows how hooks are spelled."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from lsn_mech.errors import NeuronIndexError, UnsupportedArchitectureError
from lsn_mech.models.checks import expect_hooked_model
from lsn_mech.models.protocol import model_id

Site = Literal["mlp_pre", "mlp_post"]
SITES: tuple[Site, ...] = ("mlp_pre", "mlp_post")

_HOOK_SUFFIX: dict[str, str] = {
    # Pre-activation of the gate (gated MLPs) or of the first projection (GPT-2, BLOOM).
    # act_fn(x) > 0  <=>  x > 0 for GELU / SiLU, which is what LAPE counts.
    "mlp_pre": "mlp.hook_pre",
    # Input of the down projection: act_fn(gate) * up, or act_fn(W_in x). Zeroing a neuron
    # here is the papers' deactivation.
    "mlp_post": "mlp.hook_post",
}


@dataclasses.dataclass(frozen=True)
class HookSites:
    """Where a model's MLP neurons can be read and written, and how many there are."""

    n_layers: int
    d_mlp: int
    model_id: str | None = None

    def name(self, site: str, layer: int) -> str:
        """The TransformerLens hook name of ``site`` in ``layer``."""
        self.check_layer(layer)
        try:
            suffix = _HOOK_SUFFIX[site]
        except KeyError:
            raise ValueError(f"Unknown site {site!r}; use one of {', '.join(SITES)}.") from None
        return f"blocks.{layer}.{suffix}"

    def mlp_pre(self, layer: int) -> str:
        """Hook name of the gate / first-projection pre-activation in ``layer``."""
        return self.name("mlp_pre", layer)

    def mlp_post(self, layer: int) -> str:
        """Hook name of the down projection's input in ``layer``."""
        return self.name("mlp_post", layer)

    def names(self, site: str) -> list[str]:
        """Hook names of ``site`` in every layer, bottom to top."""
        return [self.name(site, layer) for layer in range(self.n_layers)]

    def check_layer(self, layer: int) -> None:
        """Raise a clear error when ``layer`` is not a layer of this model."""
        if not 0 <= layer < self.n_layers:
            raise NeuronIndexError(
                f"Layer {layer} is out of range: this model has layers 0..{self.n_layers - 1}."
            )


def hook_sites(model: Any) -> HookSites:
    """Resolve the MLP hook sites of ``model``, or say why it has none.

    ``model`` is anything that may be a `HookedModel`; what is not gets a clear
    error rather than a type error. Works for TransformerLens 4 bridges and TransformerLens 3
    ``HookedTransformer``s, which both name the sites ``blocks.{i}.mlp.hook_pre`` / ``hook_post``.
    """
    expect_hooked_model(model)
    cfg = getattr(model, "cfg", None)
    n_layers = getattr(cfg, "n_layers", None)
    d_mlp = getattr(cfg, "d_mlp", None)
    architecture = getattr(cfg, "architecture", None) or type(model).__name__
    if not n_layers or not d_mlp:
        raise UnsupportedArchitectureError(
            f"{architecture}: the model config has no n_layers/d_mlp, so it has no MLP "
            "neurons lsn_mech can address. Load a decoder-only model with an MLP in every "
            "block (GPT-2, BLOOM, Llama, Qwen2, Mistral, Gemma 3) through lsn_mech.load_model."
        )
    sites = HookSites(n_layers=int(n_layers), d_mlp=int(d_mlp), model_id=model_id(model))
    available = model.hook_dict
    missing = [name for site in SITES for name in sites.names(site) if name not in available]
    if missing:
        raise UnsupportedArchitectureError(
            f"{architecture} has no MLP hook sites lsn_mech can use "
            f"(missing e.g. {missing[0]!r}). "
            "Its blocks may lack an MLP (mixture-of-experts or attention-only layers). "
            "Supported: GPT-2, BLOOM, Llama, Qwen2, Mistral, Gemma 3; open an issue with the "
            "architecture name to add it."
        )
    return sites
