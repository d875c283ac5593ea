"""`pimcast train` (models/train.py): a tiny end-to-end run, config validation, CLI errors, and
bit-identical SASRec item tables on the golden and model backends."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from pimcast.config import ConfigError
from pimcast.models import train as T

TINY = {
    "seed": 0, "threads": 1,
    "dataset": {"name": "synthetic",
                "synthetic": {"num_users": 120, "num_items": 70, "num_clusters": 5, "min_length": 8,
                              "max_length": 18, "seed": 1}},
    "device": {"backend": "model", "timing": "analytic"},
    "sasrec": {"hidden": 16, "num_blocks": 1, "max_len": 18, "dropout": 0.1, "lr": 0.005, "batch_size": 40,
               "epochs": 6},
    "stage1": {"text_encoder": "random", "latent": 16, "epochs": 2, "batch_size": 40, "lr": 0.001},
    "stage2": {"llm": "tiny", "epochs": 2, "batch_size": 3, "train_users": 6, "max_history": 3,
               "num_candidates": 4, "lr": 0.001},
    "evaluation": {"llm_users": 4, "llm_num_candidates": 4, "max_history": 3, "max_new_tokens": 4, "batch_size": 2},
    "hardware": {"systems": ["rank@dimm"], "timing": "analytic"},
}


def _write(tmp_path, text: str, name: str = "c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    cfg = T.validate_config(TINY, "tiny")
    m = T.run_training(cfg, out, progress=False, log=lambda s: None)
    return out, m


def test_tiny_run_end_to_end(tiny_run):
    out, m = tiny_run
    for f in ("metrics.json", "report.md", "config.yaml", "loss_curves.png", "hit_at_1.png", "hardware.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    ck = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert [c for c in ck if c.startswith("sasrec")] == [f"sasrec-epoch{k}.pt" for k in range(1, 7)]
    assert "stage1-epoch2.pt" in ck and "stage2-epoch2.pt" in ck
    saved = torch.load(out / "checkpoints" / "sasrec-epoch6.pt")
    assert saved["state_dict"]["item_emb.weight"].shape == (71, 16)
    st2 = torch.load(out / "checkpoints" / "stage2-epoch2.pt")
    assert set(st2) >= {"user_proj", "item_proj"} and "llm" in st2  # projectors only, never the LLM weights
    doc = json.loads((out / "metrics.json").read_text())
    s = doc["summary"]
    assert s["sasrec_hit@1"] > 0.05          # beats random over 1 + 19 candidates
    assert not s["nan_losses"]
    assert len(doc["sasrec"]["loss"]) == doc["sasrec"]["steps"] == 6 * 3
    assert doc["sasrec"]["epoch_loss"][-1] < doc["sasrec"]["epoch_loss"][0]
    a = doc["allmrec"]
    assert a["users"] == 4 and 0 <= a["hit@1_generate"] <= 1 and 0 <= a["hit@1_likelihood"] <= 1
    dev = doc["device"]["stages"]
    assert set(dev) == {"sasrec_train", "sasrec_eval", "stage1", "stage2", "allmrec_eval"}
    assert dev["sasrec_train"]["cycles"] > 0 and dev["sasrec_train"]["rows_updated"] > 0
    assert dev["stage1"]["lookups"] > 0 and dev["stage1"]["rows_updated"] == 0  # SASRec frozen: forward only
    sp = doc["speedup"]
    assert sp["vs_cpu"]["rank@dimm"] > 0 and sp["vs_gpu"]["rank@dimm"] > 0
    assert sp["workload"]["users"] == 40 and sp["workload"]["max_len"] == 18
    rep = (out / "report.md").read_text()
    assert "SASRec" in rep and "A-LLMRec" in rep and "speedup vs CPU" in rep


def test_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'sasrek'.*"):
        T.load_config(_write(tmp_path, "sasrek: {epochs: 1}\n"))
    p = _write(tmp_path, "sasrec: {epochz: 1}\n", "typo.yaml")
    with pytest.raises(ConfigError) as e:
        T.load_config(p)
    assert "sasrec.epochz" in str(e.value) and "typo.yaml" in str(e.value)
    for text, what in (("sasrec: {epochs: 0}\n", "sasrec.epochs"),
                       ("sasrec: {dropout: 1.5}\n", "sasrec.dropout"),
                       ("sasrec: {epochs: two}\n", "sasrec.epochs"),
                       ("device: {backend: fpga}\n", "device.backend"),
                       ("evaluation: {generate: 1}\n", "evaluation.generate"),
                       ("hardware: {systems: [rank@moon]}\n", "rank@moon"),
                       ("stage1: [1, 2]\n", "stage1"),
                       ("dataset: {name: ml-100k, synthetic: {num_users: 5}}\n", "dataset.synthetic")):
        with pytest.raises(ConfigError, match=r".*") as e:
            T.load_config(_write(tmp_path, text))
        assert what in str(e.value), (text, str(e.value))
    with pytest.raises(ConfigError, match="not valid YAML"):
        T.load_config(_write(tmp_path, "sasrec: {epochs: [\n"))
    with pytest.raises(ConfigError, match="unknown train preset"):
        T.load_config("no-such-preset")


def test_shipped_configs_validate():
    for name in ("default", "tiny", "ml-100k", "ml-100k-quick", "scientific"):
        cfg = T.load_config(name)
        assert cfg["device"]["backend"] == "model"
    d = T.load_config("default")
    assert d["dataset"]["name"] == "synthetic" and d["stage2"]["llm"] == "smollm2"
    ov = T.load_config("default", {"sasrec.epochs": 1, "dataset.name": "ml-100k", "dataset.synthetic": {}})
    assert ov["sasrec"]["epochs"] == 1 and ov["dataset"]["name"] == "ml-100k"
    with pytest.raises(ConfigError, match="command-line"):
        T.load_config("default", {"sasrec.epochs": -1})


def _args(**kw):
    p = argparse.ArgumentParser()
    T.add_arguments(p)
    a = p.parse_args([])
    for k, v in kw.items():
        setattr(a, k, v)
    a.no_progress = True
    return a


def test_cli_errors_exit_2(tmp_path, capsys):
    assert T.main(_args(config=str(_write(tmp_path, "bogus: 1\n")))) == 2
    assert "unknown key 'bogus'" in capsys.readouterr().err
    assert T.main(_args(config="tiny", dataset=str(tmp_path / "nowhere"), out=str(tmp_path / "o"))) == 2
    assert "nowhere" in capsys.readouterr().err
    assert T.main(_args(config="tiny", backend="bogus", out=str(tmp_path / "o2"))) == 2
    assert "bogus" in capsys.readouterr().err


def test_cli_registered():
    from pimcast.cli import COMMANDS

    assert COMMANDS["train"][0] == "pimcast.models.train"


def test_golden_and_model_give_bit_identical_item_tables():
    """Same seed + SGD on the item table: the golden and model backends produce the same bits."""
    from pimcast.host import open_device
    from pimcast.models import datasets as D
    from pimcast.models import sasrec as S

    ds = D.generate_synthetic(num_users=48, num_items=60, num_clusters=4, min_length=6, max_length=14, seed=2)
    sp = ds.split()
    cfg = S.SASRecConfig(hidden=16, num_blocks=1, max_len=14, dropout=0.0)
    tables = {}
    for backend in ("model", "golden"):
        torch.manual_seed(0)
        dev = open_device(backend, timing="analytic") if backend == "model" else open_device(backend)
        m = S.SASRec(ds.num_items, cfg, item_embedding_factory=S.make_item_embedding(backend, device=dev), seed=0)
        S.train_sasrec(m, sp, epochs=2, batch_size=16, item_optimizer="sgd", item_lr=0.5, seed=0)
        tables[backend] = m.item_table()
    assert torch.equal(tables["model"].view(torch.int32), tables["golden"].view(torch.int32))
    assert not torch.equal(tables["model"], S.SASRec(ds.num_items, cfg, backend="torch", seed=0).item_table())


@pytest.mark.slow
def test_default_config_with_smollm2(tmp_path):
    """The embedded default (real SmolLM2-135M, MiniLM): minutes, so marked slow."""
    cfg = T.load_config("default")
    m = T.run_training(cfg, tmp_path, progress=False, log=lambda s: None)
    s = m["summary"]
    assert not s["nan_losses"] and s["sasrec_hit@1"] > 0.05
    assert s["allmrec_hit@1_likelihood"] is not None and s["device_cycles_total"] > 0


def test_run_step_train_figures_and_checks(tiny_run, tmp_path, monkeypatch):
    """`pimcast run`'s train step: key figures from the run's summary; fails on NaN / random Hit@1."""
    import copy

    from pimcast import run as R

    _, m = tiny_run
    calls = []

    def fake(cfg, out, progress=True, log=None):
        calls.append((cfg["_source"], out))
        return fake.m

    fake.m = m
    monkeypatch.setattr(T, "run_training", fake)
    ctx = {"out": tmp_path, "train_config": "tiny"}
    f = R.step_train(ctx)
    assert calls[0][0].endswith("tiny.yaml") and calls[0][1] == tmp_path / "train"
    assert f["sasrec_hit@1"] > 0.05 and f["device_cycles"] > 0 and "rank@dimm" in f["speedup_vs_cpu"]
    assert f["allmrec_hit@1_likelihood"] is not None
    bad = copy.deepcopy(m)
    bad["summary"]["nan_losses"] = True
    fake.m = bad
    with pytest.raises(R.StepFailed, match="non-finite"):
        R.step_train(ctx)
    bad = copy.deepcopy(m)
    bad["summary"]["sasrec_hit@1"] = 0.04
    fake.m = bad
    with pytest.raises(R.StepFailed, match="random"):
        R.step_train(ctx)
    assert "train" in R.STEPS and list(R.STEPS)[:3] == ["verilog", "golden", "fma-cosim"]


def test_eval_ml100k_benchmark_rejects_bad_options(capsys):
    """benchmarks/eval_ml100k.py checks its options before loading any data or model."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_ml100k", Path(__file__).resolve().parent.parent / "benchmarks" / "eval_ml100k.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for argv, msg in ((["--parts", "main,bogus"], "unknown part(s) bogus"),
                      (["--eval-users", "0"], "--eval-users must be >= 1, got 0"),
                      (["--stage2-steps", "-3"], "--stage2-steps must be >= 1, got -3")):
        with pytest.raises(SystemExit) as e:
            mod.main(argv)
        assert e.value.code == 2 and msg in capsys.readouterr().err
    assert mod.PAPER["A-LLMRec"] == 0.6237 and mod.PAPER["train time ratio TALLRec/A-LLMRec"] == 2.53
