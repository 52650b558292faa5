"""Scaling laws: fit the unified, Chinchilla and Frantar forms to runs, with honest uncertainty."""
import hashlib
import tempfile

import streamlit as st

from app.ui import charts, downloads, laws_view as lv, state, uncertainty_view as uv
from app.ui.common import user_errors
from app.ui.runs_view import fit_table, runs_dir
from app.ui.working_law import fitted_law, planning_presets, preset_law
from planner.laws import PRESETS
from planner.runs import seed_pairs

SOURCES = {"seed": "Seed's ~1B pairs (bundled)", "study": "The shipped validation study",
           "registry": "This project's validation runs", "upload": "Upload a CSV"}


@st.cache_data(show_spinner=False, max_entries=64)
def _fit(source, form, grid, n_draws, exponents, digest):  # digest: content hash of an upload (its path could be stale)
    return lv.fit_form(source, form, grid, n_draws, exponents=exponents)


st.title("Scaling laws")
with st.container(border=True):
    st.markdown(f"**Working law** (every page plans with it): {state.working_law().label}")
    p1, p2 = st.columns([3, 1], vertical_alignment="bottom")
    presets = planning_presets()
    preset_name = p1.selectbox("Plan with a published preset instead", presets, key="laws_use_preset_name",
                               index=presets.index(lv.DEFAULT_EXPONENT_PRESET),
                               help="presets whose D counts tokens (the Frantar T5 law counts training steps)")
    p2.button("Use preset", key="laws_use_preset", on_click=lambda: state.set_working_law(preset_law(preset_name)),
              width="stretch")
    st.caption("Or fit a form below and make it the working law: its parametric bootstrap then puts an interval on "
               "every predicted loss inside the region its runs cover; outside, the number is marked as an "
               "extrapolation.")

kind = st.radio("Runs to fit", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="laws_source")
digest = ""
if kind == "seed":
    source, described = seed_pairs(), "the seed's ~1B pairs"
    st.caption("Four sparse / small-dense pairs with matched N_avg at 20–80% sparsity (Jin et al., ICLR 2025 model "
               "cards): eight runs, all near 1B parameters.")
elif kind == "study":
    source, described = lv.study_runs(), "the shipped validation study"
    st.caption(f"`{lv.STUDY.relative_to(lv.STUDY.parents[3])}`: {len(source)} byte-level CPU runs (a dense ladder, its "
               f"seeds, sparse / dense pairs at matched N_avg), as the study's report fits them: the tiny preset "
               f"(2 tokens per N_avg) and the ablations are left out.")
elif kind == "registry":
    source, described = fit_table(runs_dir()), "this project's validation runs"
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
    source, described = lv.save_upload(upload.name, data, folder), upload.name

n_runs = lv.count_runs(source)
hold_key = f"laws_hold_{kind}"
held = st.session_state.get(hold_key, n_runs < lv.HOLD_BELOW)
problem, reasons = lv.availability(source, 2 if held else 0)
if problem:
    st.error(problem)  # once for the file, not once per form
    st.stop()
offered = [f for f in lv.FORMS if reasons[f] is None]
if not offered:
    st.error(next(iter(reasons.values())))
    st.stop()
c1 = st.container()  # the full width: three form labels fit at 1024 px (in a third of it the chips were cut)
if "laws_forms" in st.session_state:  # keep the user's picks that this table supports
    st.session_state["laws_forms"] = [f for f in st.session_state["laws_forms"] if f in offered]
forms = c1.multiselect("Forms", offered, format_func=lv.FORM_LABELS.get, key="laws_forms",
                       **({} if "laws_forms" in st.session_state else {"default": offered}))
for form, reason in reasons.items():
    if reason is not None:
        c1.caption(f"{lv.FORM_LABELS[form]} is off: {lv.off_reason(reason)}.")
c2, c3 = st.columns(2)
grid = c2.radio("Start grid", ["coarse", "chinchilla"], horizontal=True, key="laws_grid",
                help="coarse: a few hundred starts; chinchilla: Hoffmann et al.'s 4500-point grid")
n_boot = c3.select_slider("Posterior draws", [50, 100, 200, 500], value=100, key="laws_boot",
                          help="refits of tables simulated from the fit with its own run-to-run noise")
h1, h2 = st.columns([1, 1])
hold = h1.checkbox("Hold α, β at a preset", value=n_runs < lv.HOLD_BELOW, key=hold_key,
                   help=f"On by default below {lv.HOLD_BELOW} runs: a handful of runs cannot identify five "
                        "parameters (a free fit of the seed's eight runs leaves both exponents and the "
                        "compute-optimal exponent unidentified: their profiles stay flat to the plausible range's "
                        "end). Holding the N and D exponents (Frantar: d, f) "
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
comparison = lv.comparison(fits)
st.dataframe(comparison, hide_index=True, width="stretch", column_config=lv.COMPARISON_FORMAT)
downloads.csv_button("Comparison (CSV)", comparison, "laws-comparison")
plan = None
with user_errors(stop=False):
    plan = state.current_plan()  # the Pareto page's selected plan, to read each fit's prediction on
for form, r in fits.items():
    st.subheader(lv.FORM_LABELS[form])
    for note in (lv.support_warning(r.fit), lv.degenerate_warning(r.fit)):
        if note:
            st.warning(note)
    m1, m2 = st.columns(2)
    m1.metric("Compute-optimal exponent a", f"{r.fit.optimal_n_exponent:.3f}",
              help="N_opt ∝ C^a; interval: profile likelihood, unidentified when the runs do not bound it")
    m1.caption(uv.exponent_caption(r, preset if exponents else None))
    if plan is not None:
        m2.metric("Selected plan's loss", f"{lv.form_prediction(r, plan).loss:.3f}",
                  help=f"the Pareto page's selected plan ({plan.name}) under this fit, nats/token")
        m2.caption(uv.loss_caption(r, plan))
    m3, m4 = st.columns(2)
    m3.metric("Held-out RMSE (nats)", f"{r.heldout['heldout_rmse']:.4f}", help=r.heldout["scheme"])
    m4.metric("Starts at the best objective", f"{r.fit.n_starts_at_best} / {r.fit.n_starts}")
    working = fitted_law(r.fit, r.posterior, r.profiles, r.table, described, r.no_interval)
    in_force = state.working_law().key == working.key
    cannot = lv.degenerate_warning(r.fit)
    worse = lv.heldout_note(fits, form)
    if worse:
        st.warning(worse)
    b1, b2 = st.columns(2, vertical_alignment="center")  # room for "Use as the working law anyway" at 1024 px
    b1.button("Working law ✓" if in_force else "Use as the working law anyway" if worse else "Use as the working law",
              key=f"laws_use_{form}", type="secondary" if in_force or worse else "primary",
              disabled=in_force or cannot is not None,
              on_click=state.set_working_law, args=(working,),
              help="this fit cannot plan (see the warning above)" if cannot else
              "Every page (Pareto, Schedule designer, Export, Runs) then plans with this fit and shows its interval "
              "inside the region of its runs")
    if note := uv.use_note(r, in_force):
        b2.caption(note)
    with st.expander("Raw parameters (exponents with profile intervals; A trades off against α, B against β)"):
        st.dataframe(lv.params_table(r), hide_index=True)

pairs = lv.pair_points(source)
if not pairs.empty:
    st.subheader("Sparse and dense runs against N_avg and N_final")
    st.caption("Each sparse run and its small-dense partner, joined: at matched N_avg their losses nearly agree.")
    for count, chart in charts.pairs_charts(pairs).items():  # stacked: titles and legends fit at laptop widths
        st.altair_chart(chart, width="stretch")
        downloads.chart_buttons(chart, f"laws-pairs-{count}")
preds = lv.predictions(source, fits)
for name, chart in (("fit", charts.fit_chart(preds)), ("residuals", charts.residual_chart(preds))):
    st.altair_chart(chart, width="stretch")
    downloads.chart_buttons(chart, f"laws-{name}")
