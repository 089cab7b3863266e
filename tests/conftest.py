"""Shared fixtures. Type annotations of lsn_mech are checked at run time in every test
(jaxtyping shapes + beartype), so the hook must be installed before lsn_mech is imported."""

from __future__ import annotations

import os

from jaxtyping import install_import_hook

if os.environ.get("LSN_MECH_TYPECHECK", "1") == "1":
    install_import_hook("lsn_mech", "beartype.beartype")

import pytest
import torch

from lsn_mech.models import TINY_MODELS, build_tiny, load_model

TEXTS = {
    "en": [
        "In the beginning God created the heaven and the earth.",
        "And the earth was without form, and void; and darkness was upon the face of the deep.",
        "And God said, Let there be light: and there was light.",
        "And God saw the light, that it was good.",
    ],
    "fr": [
        "Au commencement, Dieu créa les cieux et la terre.",
        "La terre était informe et vide: il y avait des ténèbres à la surface de l'abîme.",
        "Dieu dit: Que la lumière soit! Et la lumière fut.",
        "Dieu vit que la lumière était bonne.",
    ],
    "zh": [
        "起初,神创造天地。",
        "地是空虚混沌,渊面黑暗;神的灵运行在水面上。",
        "神说:要有光,就有了光。",
        "神看光是好的,就把光暗分开了。",
    ],
}


@pytest.fixture(params=TINY_MODELS)
def tiny_name(request: pytest.FixtureRequest) -> str:
    """Every tiny architecture in turn."""
    return request.param


@pytest.fixture
def tiny_model(tiny_name: str):  # type: ignore[no-untyped-def]
    """A booted tiny model of each architecture."""
    return load_model(tiny_name)


@pytest.fixture(scope="session")
def llama():  # type: ignore[no-untyped-def]
    """One booted tiny Llama shared by tests that do not modify it."""
    return load_model("tiny-llama")


@pytest.fixture
def texts() -> dict[str, list[str]]:
    return {k: list(v) for k, v in TEXTS.items()}


@pytest.fixture
def hf_copy():  # type: ignore[no-untyped-def]
    """A fresh, unbooted HF copy of a tiny model (booting modifies the model in place)."""

    def make(name: str) -> torch.nn.Module:
        return build_tiny(name).model

    return make
