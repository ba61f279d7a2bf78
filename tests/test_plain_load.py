"""A transferred module loads the way AdapterHub's docs say: `model.load_adapter(path)`, nothing else."""


import pytest
from helpers.models import add_module, load_plainly, make_model, save_model
from safetensors.numpy import load_file

from transmod.cli import main

PAIRS = {  # student name: (teacher type, layers, width), (student type, layers, width)
    "bert": (("bert", 4, 24), ("bert", 2, 24)),
    "distilbert": (("bert", 4, 24), ("distilbert", 2, 24)),
    "xlm-roberta": (("xlm-roberta", 4, 24), ("xlm-roberta", 2, 16)),
}


@pytest.fixture(scope="module")
def transferred(tmp_path_factory, text_file):
    root = tmp_path_factory.mktemp("plain")
    jobs = []
    for name, ((t_type, t_layers, t_width), (s_type, s_layers, s_width)) in PAIRS.items():
        teacher = save_model(make_model(t_type, t_layers, t_width), root / name / "teacher")
        student = save_model(make_model(s_type, s_layers, s_width, seed=3), root / name / "student")
        for peft in ("adapter", "lora"):
            module = root / name / f"{peft}-teacher"
            add_module(make_model(t_type, t_layers, t_width), peft).save_adapter(str(module), "task")
            out = root / name / f"{peft}-student"
            assert main(["transfer", "--module", str(module), "--teacher-model", teacher, "--student-model", student,
                         "--mapping", "skip", "--samples", str(text_file), "--out", str(out)]) == 0
            jobs.append((f"{name}/{peft}", student, str(out)))
    return jobs


def test_plain_load_adapter_in_a_fresh_process(transferred):
    results = load_plainly(transferred)
    assert set(results) == {job[0] for job in transferred}
    for name, _, out in transferred:
        assert results[name]["missing"] == [] and results[name]["unexpected"] == [], name
        saved = load_file(f"{out}/adapter.safetensors")  # the .bin and the safetensors file hold the same weights
        weights = results[name]["weights"]
        assert set(weights) == set(saved) and saved, name
        assert all(weights[key] == value.tolist() for key, value in saved.items()), name
