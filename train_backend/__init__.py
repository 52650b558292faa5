"""Sparse pre-training backend: trains a planner TrainingPlan with gradual magnitude pruning.

For the app:
  launch   subprocess.Popen([sys.executable, "-m", "train_backend", "train", PLAN, "--runs-dir", DIR,
           "--run-id", ID])  (exit 0 finished, 1 failed, 2 bad input with one line on stderr, 128 + the signal
           when SIGINT, SIGTERM or SIGHUP cancelled it)
  read     registry.list_runs(DIR), registry.get_run(DIR, ID), registry.read_metrics(run["run_dir"]),
           and <run_dir>/summary.json once the run ends
  cancel   registry.cancel(DIR, ID): SIGINT (SIGTERM and SIGHUP alike); the trainer checkpoints and marks the run
           cancelled
  resume   python -m train_backend train --resume ID --runs-dir DIR
  export   python -m train_backend export ID --hf OUT_DIR --runs-dir DIR
"""
