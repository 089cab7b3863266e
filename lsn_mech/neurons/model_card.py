"""The model card (``README.md``) of a shared neuron folder: what a reader sees on the hub.

YAML front matter that the hub indexes (``library_name``, ``tags``, ``base_model``,
``language``), then the provenance (model, corpus, method and parameters, lsn_mech
versions), the counts per language and per layer, and how to load the neurons. The
numbers are computed from the sets themselves, so the card cannot disagree with the
file it describes. It knows `NeuronSet` but not `LanguageNeurons` (it sits below it).
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol, runtime_checkable

from lsn_mech._version import __version__
from lsn_mech.neurons.neuron_set import NeuronSet
from lsn_mech.provenance import Provenance
from lsn_mech.results import markdown_table


@runtime_checkable
class NeuronsLike(Protocol):
    """What the card reads of a `LanguageNeurons` (which sits above this module)."""

    @property
    def languages(self) -> tuple[str, ...]: ...
    @property
    def n_layers(self) -> int: ...
    @property
    def d_mlp(self) -> int: ...
    @property
    def site(self) -> str: ...
    @property
    def model_id(self) -> str | None: ...
    @property
    def provenance(self) -> Provenance | None: ...
    def __getitem__(self, language: str) -> NeuronSet: ...
    def per_layer(self) -> dict[str, list[int]]: ...
    def union(self) -> NeuronSet: ...
    def exclusive(self, language: str) -> NeuronSet: ...


LIBRARY_NAME = "lsn_mech"
TAGS = ("language-specific-neurons", "lsn_mech", "interpretability")

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def looks_like_hub_id(name: str | None) -> bool:
    """Whether ``name`` has the shape of a hub model id (``owner/name``), not a zoo name
    or a local path: only such an id may go into ``base_model`` (the hub refuses others)."""
    return bool(name) and bool(_HUB_ID.match(str(name))) and not str(name).startswith(".")


def _yaml(value: str) -> str:
    """A quoted ``value``: a JSON string is a valid YAML double-quoted scalar (and a valid
    Python string literal, for the snippet)."""
    return json.dumps(value, ensure_ascii=False)


def front_matter(
    languages: list[str], provenance: Provenance | None, base_model: str | None
) -> str:
    """The YAML block between ``---`` lines that the hub reads as the card's metadata.

    Language codes that are not ISO-like (``"random:en"``, ``"eng_Latn"``) are left out of
    ``language:`` (the hub validates it) but stay in the card's tables.
    """
    tags = list(TAGS)
    method = provenance.method if provenance is not None else None
    if method:
        tags.append(method.replace(":", "-").replace("_", "-").lower())
    lines = ["---", f"library_name: {_yaml(LIBRARY_NAME)}", "tags:"]
    lines += [f"- {_yaml(tag)}" for tag in tags]
    if base_model:
        lines.append(f"base_model: {_yaml(base_model)}")
    codes = [code for code in languages if _LANGUAGE_CODE.match(code)]
    if codes:
        lines.append("language:")
        lines += [f"- {_yaml(code)}" for code in codes]
    lines.append("---")
    return "\n".join(lines) + "\n"


def _provenance_rows(provenance: Provenance | None, model_id: str | None) -> list[list[Any]]:
    record = provenance or Provenance(library_version="unknown", created="unknown")
    return [
        ["model", f"`{model_id or record.model_id or 'unknown'}`"],
        ["corpus", record.corpus or "unknown"],
        ["corpus hash", f"`{record.corpus_hash}`" if record.corpus_hash else "unknown"],
        ["method", record.method or "unknown"],
        ["detected with lsn_mech", record.library_version],
        ["saved with lsn_mech", __version__],
        ["created", record.created],
    ]


def model_card(
    neurons: NeuronsLike, *, repo_id: str | None = None, base_model: str | None = None
) -> str:
    """The whole ``README.md``: front matter, provenance, counts, and a loading snippet.

    Args:
        neurons: the `LanguageNeurons` the card describes.
        repo_id: the hub repository the card will live in (for the snippet).
        base_model: hub id of the model; by default the model id when it is ``owner/name``.
    """
    languages = list(neurons.languages)
    provenance = neurons.provenance
    model_id = neurons.model_id or (provenance.model_id if provenance is not None else None)
    if base_model is None and looks_like_hub_id(model_id):
        base_model = model_id
    total = neurons.n_layers * neurons.d_mlp
    method = (provenance.method if provenance else None) or "an unrecorded method"
    lines = [
        front_matter(languages, provenance, base_model),
        f"# Language-specific neurons of {model_id or 'an unrecorded model'}",
        "",
        f"MLP neurons specific to {len(languages)} languages ({', '.join(languages)}), "
        f"found with **{method}** and saved with lsn_mech {__version__}. The model has "
        f"{neurons.n_layers} layers of {neurons.d_mlp} neurons ({total:,} in all); the "
        f"neurons live at the hook site `{neurons.site}`.",
        "",
        "## Provenance",
        "",
        markdown_table(["field", "value"], _provenance_rows(provenance, model_id)),
        "",
        "### Parameters",
        "",
    ]
    parameters = dict(provenance.parameters) if provenance is not None else {}
    if parameters:
        lines.append(
            markdown_table(["parameter", "value"], [[f"`{k}`", v] for k, v in parameters.items()])
        )
    else:
        lines.append("None recorded.")
    union = neurons.union()
    by_language = [
        [x, len(neurons[x]), _share(len(neurons[x]), total), len(neurons.exclusive(x))]
        for x in languages
    ]
    by_language.append(["any language", len(union), _share(len(union), total), ""])
    counts = neurons.per_layer()
    per_layer = [
        [layer, *(counts[x][layer] for x in languages), count]
        for layer, count in enumerate(union.per_layer())
    ]
    lines += [
        "",
        "## Neurons per language",
        "",
        markdown_table(
            ["language", "neurons", "share of the model", "in no other language"], by_language
        ),
        "",
        "## Neurons per layer",
        "",
        markdown_table(["layer", *languages, "any language"], per_layer),
        "",
        "## How to load",
        "",
        "```python",
        "import lsn_mech as lm",
        "",
        f"neurons = lm.LanguageNeurons.from_pretrained({_yaml(repo_id or 'path/to/folder')})",
        f"model = lm.load_model({_yaml(model_id or 'the-model-id')})",
        f"with lm.deactivate(model, neurons[{_yaml(languages[0])}]):",
        "    ...  # the model without these neurons",
        "```",
        "",
        "## Files",
        "",
        "- `neurons.safetensors`: one `int64` index tensor per language and layer, with the "
        "shape, site, model id, language order and provenance in its header (lsn_mech's "
        "neuron format; nothing is pickled).",
        "- `lsn_mech.json`: the folder's format version, the languages and the SHA-256 of "
        "`neurons.safetensors`, which `from_pretrained` checks before loading.",
        "",
    ]
    return "\n".join(lines)


def _share(count: int, total: int) -> str:
    return f"{100 * count / total:.3f} %"
