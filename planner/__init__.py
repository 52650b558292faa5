"""Planner core: schedules, parameter accounting, scaling laws, fitting, cost ledgers, Pareto search, plan schema.

Pure numpy / scipy / pandas / pydantic: no torch, no streamlit.
"""
