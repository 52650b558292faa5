"""Input widgets shared by several pages (model shape). Widgets live here, numbers come from planner."""
from __future__ import annotations

import streamlit as st

from planner.shapes import PRESETS, ModelShape

CUSTOM = "custom"


def model_shape_input(key: str, default: str = "llama2-1b") -> ModelShape:
    """A preset shape, or a custom one from five numbers (bad combinations raise ValueError naming the field)."""
    names = [*PRESETS, CUSTOM]
    choice = st.selectbox("Model shape", names, index=names.index(default), key=f"{key}_preset",
                          help="Llama-style decoder; presets are the seed's 70M and 1B configurations and CPU sizes")
    if choice != CUSTOM:
        return PRESETS[choice]
    base = PRESETS[default]
    c1, c2 = st.columns(2)
    n_layer = c1.number_input("Layers", 1, 256, base.n_layer, key=f"{key}_n_layer")
    d_model = c2.number_input("d_model", 8, 65536, base.d_model, step=64, key=f"{key}_d_model")
    n_head = c1.number_input("Heads", 1, 512, base.n_head, key=f"{key}_n_head")
    d_ff = c2.number_input("d_ff", 8, 262144, base.d_ff, step=64, key=f"{key}_d_ff")
    vocab = st.number_input("Vocabulary", 2, 1_000_000, base.vocab, key=f"{key}_vocab")
    return ModelShape(n_layer=n_layer, d_model=d_model, n_head=n_head, d_ff=d_ff, vocab=vocab)
