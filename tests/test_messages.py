"""Messages: each fault in one line naming the file, line or flag, in its category (bad input 2, a failed write 1):
values no plan holds, hostile checkpoints, repeated CSV columns, numpy's warnings, paths with newlines."""
import json
import os

import numpy as np
import pytest

from conftest import one_line_stderr
from planner.cli import main as planner_main
from planner.ladder import tiny_plan
from planner.plan import plan_to_dict, plan_to_yaml


class _Hostile:
    """A pickle that would run a command if loaded without weights_only."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_hostile_checkpoint_falls_back_without_torch_advice(tmp_path, capsys):
    """torch.load(weights_only=True) refuses the file; its advice to retry with weights_only=False (and any warning
    it raises) never reaches the user: one line naming the file and what it held, and the previous checkpoint."""
    import hashlib
    import io
    import warnings

    import torch

    from train_backend import checkpoint
    checkpoint.save(tmp_path, {"step": 3})
    checkpoint.save(tmp_path, {"step": 4})
    buf = io.BytesIO()
    torch.save({"step": _Hostile(tmp_path / "ran")}, buf)
    payload = buf.getvalue()
    (tmp_path / checkpoint.LATEST).write_bytes(hashlib.sha256(payload).digest() + payload)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert checkpoint.load(tmp_path)["step"] == 3
    line = one_line_stderr(capsys)
    assert not caught and "weights_only" not in line and not (tmp_path / "ran").exists(), (line, caught)
    assert "ckpt.pt: holds a posix.system object besides tensors and plain values" in line, line


@pytest.mark.parametrize("text, message", [
    ("seed: 0", "line 47: an integer of 5,000 characters is too long to be a value"),
    ("name: tiny", "line 2: the tag !!binary is not accepted"),
])
def test_yaml_values_no_plan_holds_are_refused_naming_the_line(tmp_path, capsys, text, message):
    plan = plan_to_yaml(tiny_plan())
    bad = {"seed: 0": "seed: " + "9" * 5000, "name: tiny": "name: !!binary aGk="}[text]
    assert plan.splitlines()[int(message.split()[1].rstrip(":")) - 1].strip() == text
    (tmp_path / "p.yaml").write_text(plan.replace(text, bad))
    assert planner_main(["check", str(tmp_path / "p.yaml")]) == 2
    line = one_line_stderr(capsys)
    assert message in line and "set_int_max_str_digits" not in line and "JSON" not in line, line


def test_json_integer_past_the_digit_limit_is_named(tmp_path, capsys):
    (tmp_path / "p.json").write_text(json.dumps(plan_to_dict(tiny_plan())).replace('"seed": 0', '"seed": ' + "9" * 5000))
    assert planner_main(["check", str(tmp_path / "p.json")]) == 2
    line = one_line_stderr(capsys)
    assert "p.json: an integer of 5000 digits is too long to be a value" in line and "set_int" not in line, line


@pytest.mark.parametrize("argv, flag", [(["fit", "{runs}", "--grid", "coarse", "--save-law", "/dev/full"], "--save-law"),
                                        (["plan", "--preset", "tiny", "--out", "/dev/full"], "--out")])
def test_full_disk_write_exits_1_naming_flag_and_file(tmp_path, capsys, argv, flag):
    runs = tmp_path / "runs.csv"
    runs.write_text("loss,tokens,n_avg\n" + "".join(f"{2 + 9 / n ** 0.3 + 9 / d ** 0.3:.5f},{d},{n}\n"
                                                    for n in (1e6, 4e6, 1.6e7) for d in (1e8, 4e8, 1.6e9)))
    assert planner_main([a.replace("{runs}", str(runs)) for a in argv]) == 1
    assert f"error: {flag} /dev/full: cannot write (No space left on device)" == one_line_stderr(capsys)


def test_path_with_a_newline_is_shown_whole(tmp_path, capsys):
    assert planner_main(["check", str(tmp_path / "a\nb.yaml")]) == 2
    assert f"{tmp_path}/a\\nb.yaml: no such plan file" in one_line_stderr(capsys)


def test_repeated_csv_column_is_refused(tmp_path, capsys):
    (tmp_path / "r.csv").write_text("loss,tokens,n_avg,loss\n" + "3.1,1e9,1e7,2.0\n" * 9)
    assert planner_main(["fit", str(tmp_path / "r.csv")]) == 2
    assert "r.csv: column 'loss' appears more than once in the header" in one_line_stderr(capsys)


def test_numeric_warnings_fold_into_the_one_warning_line(tmp_path, capsys, monkeypatch):
    """numpy's RuntimeWarnings raised inside the fit (here an overflow in the polish step) reach the user as part
    of the single warning line, not as raw warning lines."""
    import warnings

    from planner import fit as fit_module
    real = fit_module.polish

    def overflowing(*args):
        np.exp(np.array([1e308]))  # numpy: "overflow encountered in exp"
        return real(*args)
    monkeypatch.setattr(fit_module, "polish", overflowing)
    runs = tmp_path / "r.csv"
    runs.write_text("loss,tokens,n_avg\n" + "".join(f"{2 + 9 / n ** 0.3 + 9 / d ** 0.3:.5f},{d},{n}\n"
                                                    for n in (1e6, 4e6, 1.6e7) for d in (1e8, 4e8, 1.6e9)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert planner_main(["fit", str(runs), "--grid", "coarse"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert not caught and len(err) == 1, (err, caught)
    assert err[0].startswith("warning: ") and "numpy reported overflow encountered in exp during the fit" in err[0]
