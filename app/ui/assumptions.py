"""What the working law assumes, in plain words: whose data its constants belong to, what it does not model, and
the region of model sizes and token counts where it was checked against runs."""
from __future__ import annotations

import numpy as np

from app.ui.common import human
from app.ui.working_law import WorkingLaw
from planner.laws import N_COLUMN
from planner.regime import validated_region

READS = {"n_avg": "the average parameter count over training, N_avg (the unified hypothesis: how the sparsity got "
                  "there does not matter)",
         "n_final": "the parameter count at the end, N_final"}


def assumptions(working: WorkingLaw) -> list[str]:
    """One sentence per assumption of the working law (markdown)."""
    law = working.law
    region = validated_region(working.runs, law.n_convention, N_COLUMN[law.form])
    n = np.exp(region.points[:, 0])
    per_param = np.exp(region.points[:, 1])
    fitted = law.provenance or working.label
    lines = [
        f"**E, A and B belong to one dataset and tokenizer**: those the law was fitted on ({fitted}). Loss on "
        f"another corpus or vocabulary has other constants, so absolute losses carry over only to that setup; "
        f"compare plans under one law rather than against losses measured elsewhere.",
        "**Every training token is new**: repeated data (several epochs over a smaller corpus) is not modelled; a "
        "plan that needs more tokens than the corpus holds will do worse than predicted.",
        f"**Loss follows {READS[N_COLUMN[law.form]]}** and the training tokens"
        + (", with a sparsity term (Frantar et al.)" if law.form == "frantar" else "") + ".",
        f"**Validated region**: {region.source}: N from {human(n.min())} to {human(n.max())} parameters at "
        f"{per_param.min():.0f}–{per_param.max():.0f} tokens per parameter. Outside it (hollow triangles on the "
        f"chart, the warnings under the table) the law extrapolates.",
    ]
    if working.runs is not None and "sparsity" in working.runs:
        top = float(working.runs["sparsity"].max())
        lines.append(f"**Sparsity**: the fitted runs reach {top:.0%} final sparsity; sparser plans extrapolate.")
    else:
        lines.append("**Sparsity**: the seed's released runs reach 80% final sparsity; sparser plans extrapolate.")
    return lines
