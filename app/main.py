"""Entry point: `streamlit run app/main.py`. Sets up imports and the page navigation; the Pareto planner opens."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts app/ on the path, not the repo root that holds planner/
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="Sparse pre-training planner", layout="wide")

VIEWS = Path(__file__).parent / "views"
pages = [
    st.Page(VIEWS / "pareto.py", title="Pareto planner", icon=":material/insights:", default=True),
    st.Page(VIEWS / "laws.py", title="Scaling laws", icon=":material/functions:"),
    st.Page(VIEWS / "schedule.py", title="Schedule designer", icon=":material/timeline:"),
    st.Page(VIEWS / "export.py", title="Export", icon=":material/download:"),
    st.Page(VIEWS / "runs.py", title="Runs", icon=":material/play_circle:"),
]
page = st.navigation(pages)
from app.ui import state  # noqa: E402  (after the path set-up above)

st.sidebar.caption(f"**Law in force:** {state.working_law().label}. Change it on the Scaling laws page.")
try:
    page.run()
finally:  # also after st.stop() in the page; at the sidebar's foot, after the page's own inputs
    if state.LINK_ERROR in st.session_state:
        st.sidebar.error(f"{st.session_state.pop(state.LINK_ERROR)}: the link's inputs were not used.")
    with st.sidebar.expander("Session: save, load, share"):
        st.download_button("Save session (JSON)", state.session_file(), "sparseplan-session.json", "application/json",
                           key="session_save", on_click="ignore", icon=":material/save:")
        st.file_uploader("Load a saved session", type="json", key="session_upload", on_change=state.load_upload)
        kind, message = st.session_state.pop("session_message", (None, None))
        if kind:
            getattr(st, kind)(message)
        st.caption("The address bar holds the Pareto page's inputs and selected plan: copy it to share the view.")
