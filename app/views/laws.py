"""Scaling laws: fit the unified, Chinchilla and Frantar forms to runs, with honest uncertainty."""
import hashlib
import tempfile

import streamlit as st

from app.ui import charts, laws_view as lv
from app.ui.common import user_errors
from app.ui.runs_view import fit_table, runs_dir
from planner.laws import PRESETS
from planner.runs import seed_pairs

SOURCES = {"seed": "Seed's ~1B pairs (bundled)", "registry": "This project's validation runs",
           "upload": "Upload a CSV"}


@st.cache_data(show_spinner=False, max_entries=64)
def _fit(source, form, grid, n_boot, exponents, digest):  # digest: content hash of an upload (its path could be stale)
    return lv.fit_form(source, form, grid, n_boot, exponents=exponents)


st.title("Scaling laws")
kind = st.radio("Runs to fit", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="laws_source")
digest = ""
if kind == "seed":
    source = seed_pairs()
    st.caption("Four sparse / small-dense pairs with matched N_avg at 20–80% sparsity (Jin et al., ICLR 2025 model "
               "cards): eight runs, all near 1B parameters.")
elif kind == "registry":
    source = fit_table(runs_dir())
    st.caption(f"Finished runs in `{runs_dir()}`: final validation loss against tokens and measured N_avg.")
    if source.empty:
        st.info("No finished validation runs yet: launch a plan's ladder on the Runs page.")
        st.stop()
else:
    upload = st.file_uploader("Runs CSV", type="csv", key="laws_upload",
                              help="columns loss, tokens, n_avg (dense runs may give n); optional n_final, "
                                   "sparsity, group, name")
    if upload is None:
        st.info("Upload a CSV with columns `loss`, `tokens`, `n_avg` (or `n`), and `n_final`, `sparsity` for the "
                "Chinchilla and Frantar forms.")
        st.stop()
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    folder = st.session_state.setdefault("upload_dir", tempfile.mkdtemp(prefix="sparseplan-upload-"))
    source = lv.save_upload(upload.name, data, folder)

c1, c2, c3 = st.columns([2, 1, 1])
forms = c1.multiselect("Forms", lv.FORMS, default=list(lv.FORMS), format_func=lv.FORM_LABELS.get, key="laws_forms")
grid = c2.radio("Start grid", ["coarse", "chinchilla"], horizontal=True, key="laws_grid",
                help="coarse: a few hundred starts; chinchilla: Hoffmann et al.'s 4500-point grid")
n_boot = c3.select_slider("Bootstrap resamples", [50, 100, 200, 500], value=100, key="laws_boot")
h1, h2 = st.columns([1, 1])
n_runs = lv.count_runs(source)
hold = h1.checkbox("Hold α, β at a preset", value=n_runs < lv.HOLD_BELOW, key=f"laws_hold_{kind}",
                   help=f"On by default below {lv.HOLD_BELOW} runs: a handful of runs cannot identify five "
                        "parameters (a free fit of the seed's eight runs leaves the compute-optimal exponent's "
                        "bootstrap interval several units wide). Holding the N and D exponents (Frantar: d, f) "
                        "leaves E, A, B to the runs.")
preset = h2.selectbox("Preset for α, β", list(PRESETS), index=list(PRESETS).index(lv.DEFAULT_EXPONENT_PRESET),
                      key="laws_preset", disabled=not hold)
exponents = PRESETS[preset].exponents if hold else None
if hold:
    st.caption(f"α = {exponents[0]:.4g} and β = {exponents[1]:.4g} held at **{preset}**: "
               f"{PRESETS[preset].provenance}.")

progress = st.progress(0.0, text="Fitting")
fits = {}
for i, form in enumerate(forms):
    progress.progress(i / len(forms), text=f"Fitting the {lv.FORM_LABELS[form]} form")
    with user_errors(stop=False):
        fits[form] = _fit(source, form, grid, n_boot, exponents, digest)
progress.progress(1.0, text=f"Fitted {len(fits)} of {len(forms)} forms")
if not fits:
    st.stop()

st.subheader("Comparison")
st.dataframe(lv.comparison(fits), hide_index=True, width="stretch", column_config=lv.COMPARISON_FORMAT)
for form, r in fits.items():
    st.subheader(lv.FORM_LABELS[form])
    note = lv.support_warning(r.fit)
    if note:
        st.warning(note)
    low, high = r.boot.ci()["optimal_n_exponent"]
    m1, m2, m3 = st.columns(3)
    m1.metric("Compute-optimal exponent a (N_opt ∝ C^a)", f"{r.fit.optimal_n_exponent:.3f}",
              help=f"{r.boot.level:.0%} bootstrap interval [{low:.3f}, {high:.3f}]")
    m1.caption(f"set by the held exponents ({preset})" if exponents else
               f"{r.boot.level:.0%} CI [{low:.3f}, {high:.3f}]")
    m2.metric("Held-out RMSE", f"{r.heldout['heldout_rmse']:.4f} nats", help=r.heldout["scheme"])
    m3.metric("Starts reaching the best objective", f"{r.fit.n_starts_at_best} / {r.fit.n_starts}")
    with st.expander("Raw parameters with bootstrap intervals (A trades off against α, B against β)"):
        st.dataframe(lv.params_table(r), hide_index=True)

pairs = lv.pair_points(source)
if not pairs.empty:
    st.subheader("Sparse and dense runs against N_avg and N_final")
    st.altair_chart(charts.pairs_chart(pairs))
preds = lv.predictions(source, fits)
left, right = st.columns(2)
left.altair_chart(charts.fit_chart(preds), width="stretch")
right.altair_chart(charts.residual_chart(preds), width="stretch")
