"""The one training loop (inference.training.fit), its ONNX export and the torch-vs-ONNX check."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from inference import training


def _data(n=400, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, 4).astype(np.float32)
    y = (x[:, 0] - 0.5 * x[:, 1] > 0).astype(np.float32)
    return x, y


def _fit(epochs=30, patience=4, time_budget_s=None):
    torch.manual_seed(0)
    x, y = _data()
    xv, yv = _data(200, seed=1)
    net = torch.nn.Linear(4, 1)
    bce = torch.nn.BCEWithLogitsLoss()

    def batches(epoch):
        order = np.random.RandomState(epoch).permutation(len(x))
        for i in range(0, len(x), 50):
            j = order[i:i + 50]
            yield torch.from_numpy(x[j]), torch.from_numpy(y[j])

    def step(net, b):
        return bce(net(b[0])[:, 0], b[1])

    def validate(net):
        p = net(torch.from_numpy(xv))[:, 0].numpy()
        return {"score": float(np.mean((p > 0) == (yv > 0.5)))}

    return net, training.fit(net, batches, step, validate, epochs=epochs, patience=patience, lr=0.05,
                             time_budget_s=time_budget_s), xv, yv


def test_fit_learns_and_keeps_the_best_epoch():
    net, res, xv, yv = _fit()
    assert res.best_score >= 0.95
    with torch.no_grad():
        acc = float(np.mean((net(torch.from_numpy(xv))[:, 0].numpy() > 0) == (yv > 0.5)))
    assert acc == pytest.approx(res.best_score)  # the best weights are the ones left in the net
    assert res.history[res.best_epoch]["best"]
    d = res.as_dict()
    assert d["epochs_run"] == len(res.history) and "stopped" in d


def test_fit_stops_early_when_validation_stalls():
    _, res, _, _ = _fit(epochs=200, patience=3)
    assert res.stopped.startswith("early stop") and len(res.history) < 200


def test_export_and_agreement_check(tmp_path):
    net, _, xv, _ = _fit(epochs=3)
    facts = training.export_onnx(net, torch.from_numpy(xv[:2]), tmp_path / "m.onnx", input_names=["x"],
                                 output_names=["logit"], meta_key="lightbox", meta={"a": 1})
    assert facts["onnx_bytes"] > 0 and training.read_onnx_metadata(tmp_path / "m.onnx", "lightbox") == {"a": 1}
    ok = training.agreement_check(net, tmp_path / "m.onnx", {"x": xv}, tol=1e-5)
    assert ok["ok"] and ok["n"] == len(xv)
    other = torch.nn.Linear(4, 1)  # a different network must not pass as the exported one
    with pytest.raises(AssertionError):
        training.agreement_check(other, tmp_path / "m.onnx", {"x": xv}, tol=1e-5)


def test_fit_takes_parameter_groups_with_their_own_learning_rate():
    """Discriminative learning rates: a group at lr_scale 0 never moves, the other one learns."""
    torch.manual_seed(0)
    x, y = _data()
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    first = net[0].weight.detach().clone()
    bce = torch.nn.BCEWithLogitsLoss()
    lrs = []

    def step(net, b):
        return bce(net(b[0])[:, 0], b[1])

    def batches(epoch):
        for i in range(0, len(x), 50):
            yield torch.from_numpy(x[i:i + 50]), torch.from_numpy(y[i:i + 50])

    def validate(net):
        return {"score": -float(bce(net(torch.from_numpy(x))[:, 0], torch.from_numpy(y)))}

    res = training.fit(net, batches, step, validate, epochs=5, patience=5, lr=0.05, warmup_epochs=1,
                       params=[{"params": net[0].parameters(), "lr_scale": 0.0},
                               {"params": net[1].parameters(), "lr_scale": 1.0}],
                       on_epoch=lambda e, row: lrs.append(row["lr"]))
    assert torch.equal(net[0].weight, first) and res.best_score > res.history[0]["val_score"] - 1e-9
    assert all(v == 0.0 for v in lrs)  # the row reports the first group's rate
