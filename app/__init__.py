"""Streamlit UI: thin pages (`app/views/`) over the planner core, with view logic in `app/ui/` that tests call."""
