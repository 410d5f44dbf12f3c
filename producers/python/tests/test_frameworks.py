"""Real frameworks really training tiny models on CPU, on data made here, streaming to the real relay.

The frameworks are installed by scripts/test.d/40-python; with WATCHTRAIN_REQUIRE_FRAMEWORKS=1
(as there) a missing framework is an error, not a skip.
"""

import importlib
import math
import os

import pytest

from conftest import wait_for


def need(module: str):
    if os.environ.get("WATCHTRAIN_REQUIRE_FRAMEWORKS") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module)


def blobs(n=256, seed=0):
    """Two Gaussian blobs in 8 dimensions: a classification a tiny MLP learns in a few epochs."""
    torch = need("torch")
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 8, generator=g) + (y[:, None].float() * 2 - 1) * 1.5
    return x, y


def mlp():
    torch = need("torch")
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


def finished(relay, name):
    def check():
        found = [t for t in relay.trainings() if t["name"] == name]
        return found[0] if found and found[0]["status"] in ("completed", "failed", "cancelled") else None

    return wait_for(check, timeout=15, what=f"{name} finished")


def test_plain_pytorch_loop(relay):
    torch = need("torch")
    import watchtrain

    x, y = blobs()
    xv, yv = blobs(64, seed=1)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True)
    valid = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv, yv), batch_size=16)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    sent = []
    with watchtrain.Run(relay.url, name="torch loop", epochs=4) as run:
        for epoch in run.epochs():
            model.train()
            total = 0.0
            for xb, yb in run.track(train):
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                total += loss.item()
            model.eval()
            correct, vloss = 0, 0.0
            with torch.no_grad():
                for xb, yb in run.track(valid, phase="valid"):
                    out = model(xb)
                    vloss += loss_fn(out, yb).item()
                    correct += (out.argmax(1) == yb).sum().item()
            row = dict(train_loss=total / len(train), valid_loss=vloss / len(valid), accuracy=correct / len(yv))
            sent.append(row)
            run.log_epoch(epoch, **row)
    state = relay.state(run.training_id)
    assert state["status"] == "completed"
    assert state["metrics"] == ["train_loss", "valid_loss", "accuracy"]
    assert state["train"] == {"done": 16, "total": 16} and state["valid"] == {"done": 4, "total": 4}
    rows = relay.history(run.training_id)
    assert [r[0] for r in rows] == [0, 1, 2, 3]
    for (epoch, *values), want in zip(rows, sent):
        assert values == pytest.approx(list(want.values()), rel=1e-6)
    assert sent[-1]["accuracy"] > 0.8, "the model did not learn: not a real training"


def fastai_learner(relay_url=None, extra_cbs=()):
    need("fastai")
    from fastai.data.core import DataLoaders
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle)
    from fastai.learner import Learner
    from fastai.metrics import accuracy
    import torch

    x, y = blobs()
    xv, yv = blobs(64, seed=1)
    train = list(zip(x, y))
    valid = list(zip(xv, yv))
    dls = DataLoaders.from_dsets(train, valid, bs=16, device=torch.device("cpu"))
    return Learner(dls, mlp(), loss_func=torch.nn.CrossEntropyLoss(), metrics=accuracy, cbs=list(extra_cbs))


def test_fastai_fit_one_cycle(relay):
    from watchtrain.fastai import WatchtrainCallback

    learn = fastai_learner()
    with learn.no_logging(), learn.no_bar():
        learn.fit_one_cycle(3, 1e-2, cbs=WatchtrainCallback(relay.url, name="fastai blobs"))
    training = finished(relay, "fastai blobs")
    state = relay.state(training["id"])
    assert state["status"] == "completed"
    assert state["metrics"] == ["train_loss", "valid_loss", "accuracy"]
    assert state["epochs"] == 3
    assert state["train"] == {"done": 16, "total": 16}
    assert state["valid"] == {"done": 4, "total": 4}
    rows = relay.history(training["id"])
    assert [r[0] for r in rows] == [0, 1, 2]
    last = [float(v) for v in learn.recorder.values[-1]]
    assert list(rows[-1][1:]) == pytest.approx(last, rel=1e-6)


def test_fastai_exception_is_reported(relay):
    from fastai.callback.core import Callback
    from watchtrain.fastai import WatchtrainCallback

    class Explode(Callback):
        def after_batch(self):
            if self.epoch == 1 and self.iter == 3:
                raise RuntimeError("loss exploded")

    learn = fastai_learner(extra_cbs=[Explode()])
    with pytest.raises(RuntimeError):
        with learn.no_logging(), learn.no_bar():
            learn.fit(3, 1e-2, cbs=WatchtrainCallback(relay.url, name="fastai boom"))
    training = finished(relay, "fastai boom")
    state = relay.state(training["id"])
    assert state["status"] == "failed"
    assert "loss exploded" in state["reason"]
    assert [r[0] for r in relay.history(training["id"])] == [0]


def test_fastai_cancel_is_reported(relay):
    from fastai.callback.core import Callback, CancelFitException
    from watchtrain.fastai import WatchtrainCallback

    class Stop(Callback):
        def after_epoch(self):
            if self.epoch == 1:
                raise CancelFitException()

    learn = fastai_learner(extra_cbs=[Stop()])
    with learn.no_logging(), learn.no_bar():
        learn.fit(5, 1e-2, cbs=WatchtrainCallback(relay.url, name="fastai stop"))
    training = finished(relay, "fastai stop")
    assert training["status"] == "cancelled"


def test_lightning(relay, monkeypatch):
    need("lightning")
    import lightning as L
    import torch
    from watchtrain.lightning import WatchtrainCallback

    class Blobs(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            out = self.net(x)
            self.log("val_loss", torch.nn.functional.cross_entropy(out, y))
            self.log("val_acc", (out.argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x, y = blobs()
    xv, yv = blobs(64, seed=1)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    valid = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv, yv), batch_size=16)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[WatchtrainCallback(relay.url)])
    monkeypatch.setenv("WATCHTRAIN_NAME", "lightning blobs")  # a sweep names each run; not the class "Blobs"
    trainer.fit(Blobs(), train, valid)
    training = finished(relay, "lightning blobs")
    state = relay.state(training["id"])
    assert state["status"] == "completed"
    assert {"train_loss_epoch", "val_loss", "val_acc"} <= set(state["metrics"]), state["metrics"]
    assert not any(m.endswith("_step") for m in state["metrics"])
    assert state["train"] == {"done": 16, "total": 16} and state["valid"] == {"done": 4, "total": 4}
    rows = relay.history(training["id"])
    assert [r[0] for r in rows] == [0, 1, 2]
    i = state["metrics"].index("val_loss")
    assert rows[-1][1 + i] == pytest.approx(float(trainer.callback_metrics["val_loss"]), rel=1e-6)


def test_lightning_exception(relay):
    need("lightning")
    import lightning as L
    import torch
    from watchtrain.lightning import WatchtrainCallback

    class Boom(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def training_step(self, batch, i):
            if self.current_epoch == 1:
                raise ValueError("bad batch")
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x, y = blobs()
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[WatchtrainCallback(relay.url, name="lightning boom")])
    with pytest.raises(ValueError):
        trainer.fit(Boom(), train)
    training = finished(relay, "lightning boom")
    assert training["status"] == "failed"
    assert "bad batch" in relay.state(training["id"])["reason"]


def test_keras(relay, monkeypatch):
    keras = need("keras")
    import numpy as np
    from watchtrain.keras import WatchtrainCallback

    assert keras.backend.backend() == "torch"
    monkeypatch.setenv("WATCHTRAIN_NAME", "keras blobs")  # not the model's name ("sequential")
    x, y = blobs()
    xv, yv = blobs(64, seed=1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    history = model.fit(np.asarray(x), np.asarray(y), validation_data=(np.asarray(xv), np.asarray(yv)), epochs=3,
                        batch_size=16, verbose=0,
                        callbacks=[WatchtrainCallback(relay.url, goals={"val_accuracy": None})])
    training = finished(relay, "keras blobs")
    state = relay.state(training["id"])
    assert state["status"] == "completed"
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(state["metrics"]), state["metrics"]
    # The declared goal is forwarded: no best for val_accuracy; accuracy keeps its default.
    goals = dict(zip(state["metrics"], state["goals"]))
    assert goals["val_accuracy"] == "none" and goals["accuracy"] == "max", goals
    assert state["best"][state["metrics"].index("val_accuracy")] is None, state
    assert state["epochs"] == 3 and state["train"] == {"done": 16, "total": 16}
    rows = relay.history(training["id"])
    assert [r[0] for r in rows] == [0, 1, 2]
    i = state["metrics"].index("val_loss")
    assert rows[-1][1 + i] == pytest.approx(history.history["val_loss"][-1], rel=1e-5)


def test_transformers_trainer(relay, tmp_path, monkeypatch):
    need("transformers")
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
    from watchtrain.transformers import WatchtrainCallback

    torch.manual_seed(0)
    config = BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2)
    model = BertForSequenceClassification(config)  # randomly initialised: nothing fetched

    class Tokens(torch.utils.data.Dataset):
        def __init__(self, n, seed):
            g = torch.Generator().manual_seed(seed)
            self.labels = torch.randint(0, 2, (n,), generator=g)
            self.ids = torch.randint(2, 16, (n, 8), generator=g) + self.labels[:, None] * 16

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long),
                    "labels": self.labels[i]}

    args = TrainingArguments(output_dir=str(tmp_path / "out"), num_train_epochs=3, per_device_train_batch_size=16,
                             per_device_eval_batch_size=16, eval_strategy="epoch", logging_strategy="epoch",
                             save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, learning_rate=1e-3)
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(128, 0), eval_dataset=Tokens(32, 1),
                      callbacks=[WatchtrainCallback(relay.url)])
    monkeypatch.setenv("WATCHTRAIN_NAME", "bert tiny")  # not the model type ("bert")
    trainer.train()
    training = finished(relay, "bert tiny")
    state = relay.state(training["id"])
    assert state["status"] == "completed"
    assert {"train_loss", "eval_loss"} <= set(state["metrics"]), state["metrics"]
    assert state["epochs"] == 3 and state["train"]["total"] == 8
    rows = relay.history(training["id"])
    assert [r[0] for r in rows] == [0, 1, 2]
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    i = state["metrics"].index("eval_loss")
    assert [r[1 + i] for r in rows] == pytest.approx(evals, rel=1e-6)
    assert all(not math.isnan(v) for r in rows for v in r[1:])


def test_fastai_fine_tune_is_one_training(relay):
    from watchtrain.fastai import WatchtrainCallback

    learn = fastai_learner()
    with learn.no_logging(), learn.no_bar():
        learn.fine_tune(2, 1e-2, freeze_epochs=1, cbs=WatchtrainCallback(relay.url, name="fastai fine_tune"))
    training = finished(relay, "fastai fine_tune")
    assert len([t for t in relay.trainings() if t["name"] == "fastai fine_tune"]) == 1
    state = relay.state(training["id"])
    assert state["status"] == "completed"
    assert state["epochs"] == 3
    assert [r[0] for r in relay.history(training["id"])] == [0, 1, 2]


def cli_binary():
    """The Rust CLI: $WATCHTRAIN_CLI_BIN, else target/debug/watchtrain (built when missing)."""
    import subprocess

    from relay_process import REPO

    explicit = os.environ.get("WATCHTRAIN_CLI_BIN")
    if explicit:
        return explicit
    path = REPO / "target" / "debug" / "watchtrain"
    if not path.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "watchtrain-cli"], cwd=REPO, check=True)
    return str(path)


def tail_while(relay, log, name, epochs, train):
    """Runs ``watchtrain tail`` on ``log`` while ``train()`` writes it; returns the training's state and rows."""
    import subprocess

    tail = subprocess.Popen([cli_binary(), "tail", str(log), "--name", name, "--epochs", str(epochs),
                             "--poll-ms", "50", "--url", relay.url], stderr=subprocess.PIPE, text=True)
    try:
        result = train()
        assert tail.wait(30) == 0, tail.stderr.read()
    finally:
        if tail.poll() is None:
            tail.kill()
    training = finished(relay, name)
    return result, relay.state(training["id"]), relay.history(training["id"])


def test_tail_follows_fastai_csvlogger(relay, tmp_path):
    from fastai.callback.progress import CSVLogger

    log = tmp_path / "history.csv"
    learn = fastai_learner()

    def train():
        with learn.no_bar():
            learn.fit(3, 1e-2, cbs=CSVLogger(fname=str(log)))
        return [[float(v) for v in row] for row in learn.recorder.values]

    values, state, rows = tail_while(relay, log, "fastai csv", 3, train)
    assert state["status"] == "completed"
    assert state["metrics"] == ["train_loss", "valid_loss", "accuracy"]
    assert [r[0] for r in rows] == [0, 1, 2]
    assert [list(r[1:]) for r in rows] == [pytest.approx(v, rel=1e-5) for v in values]


def test_tail_follows_keras_csvlogger(relay, tmp_path):
    keras = need("keras")
    import numpy as np

    log = tmp_path / "keras.csv"
    x, y = blobs()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    def train():
        return model.fit(np.asarray(x), np.asarray(y), validation_split=0.25, epochs=3, batch_size=16, verbose=0,
                         callbacks=[keras.callbacks.CSVLogger(str(log))]).history

    history, state, rows = tail_while(relay, log, "keras csv", 3, train)
    assert state["status"] == "completed"
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(state["metrics"])
    i = state["metrics"].index("val_loss")
    assert [r[1 + i] for r in rows] == pytest.approx(history["val_loss"], rel=1e-5)


def test_tail_follows_lightning_csvlogger(relay, tmp_path):
    need("lightning")
    import lightning as L
    import torch
    from lightning.pytorch.loggers import CSVLogger

    class Blobs(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x, y = blobs()
    xv, yv = blobs(64, seed=1)
    train_dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    valid_dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv, yv), batch_size=16)
    logger = CSVLogger(str(tmp_path), name="lt", version=0)
    log = tmp_path / "lt" / "version_0" / "metrics.csv"
    epoch_values = []

    class Record(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            m = trainer.callback_metrics
            epoch_values.append((float(m["train_loss_epoch"]), float(m["val_loss"])))

    def train():
        trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=logger, log_every_n_steps=1,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            callbacks=[Record()])
        trainer.fit(Blobs(), train_dl, valid_dl)

    _, state, rows = tail_while(relay, log, "lightning csv", 3, train)
    assert state["status"] == "completed"
    # Lightning adds a CSV column when a metric first appears (val_loss in the first validation,
    # train_loss_epoch at the epoch's end): the order tail sees depends on when it reads the file.
    names = state["metrics"]
    assert sorted(names) == ["train_loss_epoch", "val_loss"], names
    order = [names.index("train_loss_epoch"), names.index("val_loss")]
    latest = {}
    for epoch, *values in rows:  # an epoch may be sent more than once as its rows arrive: the last counts
        latest[epoch] = [values[i] for i in order]
    assert sorted(latest) == [0, 1, 2]
    assert [latest[e] for e in range(3)] == [pytest.approx(list(v), rel=1e-5) for v in epoch_values]


def test_adapters_stay_quiet_outside_a_training(relay):
    """Batches outside fit (fastai's validate, get_preds) must neither fail nor report."""
    from watchtrain.fastai import WatchtrainCallback

    learn = fastai_learner(extra_cbs=[WatchtrainCallback(relay.url, name="never fitted")])
    with learn.no_bar():
        learn.validate()
        learn.get_preds()
    assert not [t for t in relay.trainings() if t["name"] == "never fitted"]


DDP_LOOP = """
import os, torch, torch.distributed as dist, watchtrain
dist.init_process_group("gloo")
torch.manual_seed(dist.get_rank())
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
with watchtrain.Run(os.environ["RELAY"], name="ddp loop", epochs=2) as run:
    print("rank", dist.get_rank(), "reports", run.enabled, flush=True)
    for epoch in run.epochs():
        for _ in run.track(range(4)):
            loss = model(torch.randn(16, 8)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        run.log_epoch(epoch, loss=loss.item())
dist.destroy_process_group()
"""


def test_torchrun_two_processes_register_one_training(relay, tmp_path):
    need("torch")
    import subprocess
    import sys

    script = tmp_path / "ddp_loop.py"
    script.write_text(DDP_LOOP)
    # Gloo between the two processes over loopback only.
    env = dict(os.environ, RELAY=relay.url, PYTHONPATH=os.pathsep.join(sys.path), GLOO_SOCKET_IFNAME="lo")
    # --standalone: a rendezvous on a free loopback port that torchrun picks itself.
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rank 0 reports True" in result.stdout and "rank 1 reports False" in result.stdout, result.stdout
    assert [t["name"] for t in relay.trainings()] == ["ddp loop"]
    training = finished(relay, "ddp loop")
    assert [r[0] for r in relay.history(training["id"])] == [0, 1]


LIGHTNING_DDP = """
import os, torch, lightning as L
from watchtrain.lightning import WatchtrainCallback

class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(8, 2)

    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_epoch=True, sync_dist=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

if __name__ == "__main__":
    data = torch.utils.data.TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,)))
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[WatchtrainCallback(os.environ["RELAY"], name="lightning ddp")])
    trainer.fit(Tiny(), torch.utils.data.DataLoader(data, batch_size=8))
"""


def test_lightning_ddp_on_two_devices_registers_one_training(relay, tmp_path):
    need("lightning")
    import subprocess
    import sys

    script = tmp_path / "lightning_ddp.py"
    script.write_text(LIGHTNING_DDP)
    # Gloo between the two processes over loopback only.
    env = dict(os.environ, RELAY=relay.url, PYTHONPATH=os.pathsep.join(sys.path), GLOO_SOCKET_IFNAME="lo")
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [t["name"] for t in relay.trainings()] == ["lightning ddp"]
    training = finished(relay, "lightning ddp")
    assert training["status"] == "completed"
    assert [r[0] for r in relay.history(training["id"])] == [0, 1]


@pytest.mark.parametrize("framework", ["fastai", "lightning", "keras", "transformers"])
def test_a_callback_with_a_malformed_url_fails_at_construction(framework):
    need(framework)
    module = importlib.import_module(f"watchtrain.{framework}")
    with pytest.raises(ValueError, match="bad relay URL"):
        module.WatchtrainCallback("my experiment")  # the name where the URL goes
    with pytest.raises(ValueError, match="goal"):
        module.WatchtrainCallback("off", goals={"loss": "lower"})
    module.WatchtrainCallback("off", goals={"lr": None})
