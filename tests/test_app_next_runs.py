"""Runs page: 'what to run next' from the finished runs (app/ui/next_runs_view)."""
import numpy as np

from app.ui import next_runs_view
from planner.ladder import BATCH_SIZE, SEQ_LEN, ladder_shapes, rung, tiny_plan
from planner.laws import chinchilla
from test_app_common import assert_clean, open_page
from test_app_runs import fake_run
from train_backend import registry

TRUTH = dict(E=1.2, A=40.0, B=90.0, alpha=0.32, beta=0.30)


def finish_runs(folder, target, count, first=0):
    """Runs `first` to `count` of twelve finished ladder runs (three small sizes x two run lengths), their losses
    from a known law."""
    plans = [p for i, (size, ratio) in enumerate((s, r) for s in ladder_shapes(target)[:3] for r in (10, 40))
             for p in rung(target, i, *size, SEQ_LEN, BATCH_SIZE, 100, ratio=ratio)][:count]
    noise = np.random.default_rng(0).normal(0, 0.003, len(plans))
    for i, (p, e) in list(enumerate(zip(plans, noise)))[first:]:
        loss = float(chinchilla(p.derived.n_avg, p.budget.tokens, **TRUTH) * (1 + e))
        fake_run(folder, f"r{i}", p, val_loss=loss, metrics=False)
        registry.update_run(folder, f"r{i}", tokens=p.budget.tokens)  # the trainer records it as it trains


def test_suggestions_need_finished_runs_then_fit_the_budget(runs_dir):
    target = tiny_plan(steps=3000)
    finish_runs(runs_dir, target, 4)
    assert "need 6 finished runs" in next_runs_view.suggest(target, runs_dir, 10.0)
    finish_runs(runs_dir, target, 12, first=4)
    table, plans = next_runs_view.suggest(target, runs_dir, 10.0)
    assert len(table) == len(plans) > 0 and set(table["plan"]) == {p.name for p in plans}
    assert sum(float(x) for x in table.drop_duplicates("step")["CPU minutes (pair)"]) <= 10.0 + 0.1
    assert {p.pair.role for p in plans} == {"sparse", "dense_n_avg"}


def test_runs_page_offers_the_suggested_runs_for_launch(runs_dir):
    at = open_page("views/runs.py")
    at.button(key="next_runs_go").click().run()
    assert any("need 6 finished runs" in i.value for i in at.info)
    finish_runs(runs_dir, tiny_plan(steps=3000), 12)
    at.number_input(key="next_runs_budget").set_value(10.0).run()
    at.button(key="next_runs_go").click().run()
    assert_clean(at)
    table = next(d.value for d in at.dataframe if "90% interval after (nats)" in d.value.columns)
    offered = [o for o in at.selectbox(key="runs_choice").options if o.startswith("next: ")]
    assert offered == [f"next: {name}" for name in table["plan"]]
