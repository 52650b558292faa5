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
page.run()
