"""Sparse pre-training backend: trains a planner TrainingPlan with gradual magnitude pruning.

The app launches `python -m train_backend train PLAN --runs-dir DIR` as a subprocess and reads
`registry.list_runs / get_run / read_metrics`; `registry.cancel` stops a run.
"""
