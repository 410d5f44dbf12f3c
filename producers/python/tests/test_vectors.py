"""The Python codec speaks exactly the Rust crate's bytes: every file in protocol/vectors/."""

import json
import math
import os
import pathlib

import pytest

from watchtrain import protocol as p

VECTORS = pathlib.Path(os.environ.get("WATCHTRAIN_VECTORS", pathlib.Path(__file__).resolve().parents[3] / "protocol" / "vectors"))
# Every vector file; reject.json (the reject list) and limits.json (the limits) are read by their own tests.
FILES = sorted(f for f in VECTORS.glob("*.json") if f.name not in ("reject.json", "limits.json", "goals.json"))


def _float(v):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def _floats(values):
    return [_float(v) for v in values]


def meaning(frame: p.Frame) -> dict:
    """The vectors' JSON meaning of a frame (see protocol/tests/vectors.rs)."""
    a = frame.action
    name = {
        p.Register: "register", p.Progress: "progress", p.Stats: "stats", p.Log: "log", p.Finished: "finished",
        p.Heartbeat: "heartbeat", p.Stalled: "stalled", p.Ack: "ack", p.Snapshot: "snapshot",
    }[type(a)]
    m = {"training_id": frame.training_id, "seq": frame.seq, "action": name}
    if isinstance(a, p.Register):
        m[name] = {"name": a.name, "run_key": a.run_key, "metrics": list(a.metrics), "epochs": a.epochs, "batches": a.batches,
                   "goals": list(a.goals)}
    elif isinstance(a, p.Progress):
        m[name] = {"phase": a.phase, "epoch": a.epoch, "epochs": a.epochs, "batch": a.batch, "batches": a.batches}
    elif isinstance(a, p.Stats):
        m[name] = {"epoch": a.epoch, "duration_ms": a.duration_ms, "values": _floats(a.values)}
    elif isinstance(a, p.Log):
        m[name] = {"level": a.level, "text": a.text}
    elif isinstance(a, p.Finished):
        m[name] = {"outcome": a.outcome, "reason": a.reason}
    elif isinstance(a, p.Ack):
        m[name] = {"seq": a.seq}
    elif isinstance(a, p.Snapshot):
        m[name] = {
            "name": a.name, "metrics": list(a.metrics), "epochs": a.epochs, "status": a.status, "reason": a.reason,
            "epoch": a.epoch, "phase": a.phase, "train": {"done": a.train.done, "total": a.train.total},
            "valid": {"done": a.valid.done, "total": a.valid.total}, "stride": a.stride, "history": _floats(a.history),
            "latest_epoch": a.latest_epoch, "latest": _floats(a.latest),
            "best": [{"epoch": b.epoch, "value": _float(b.value)} for b in a.best],
            "elapsed_ms": a.elapsed_ms, "timed_epochs": a.timed_epochs, "last_seq": a.last_seq, "goals": list(a.goals),
        }
    return m


def _value(v):
    return {"NaN": math.nan, "inf": math.inf, "-inf": -math.inf}.get(v, v) if isinstance(v, str) else v


def from_meaning(m: dict) -> p.Frame:
    """A frame built from a vector's meaning alone, to check the encoder without the decoder."""
    name = m["action"]
    body = m.get(name, {})
    if name == "register":
        action = p.Register(body["name"], body["run_key"], body["metrics"], body["epochs"], body["batches"], body["goals"])
    elif name == "progress":
        action = p.Progress(body["phase"], body["epoch"], body["epochs"], body["batch"], body["batches"])
    elif name == "stats":
        action = p.Stats(body["epoch"], body["duration_ms"], [_value(v) for v in body["values"]])
    elif name == "log":
        action = p.Log(body["level"], body["text"])
    elif name == "finished":
        action = p.Finished(body["outcome"], body["reason"])
    elif name == "heartbeat":
        action = p.Heartbeat()
    elif name == "stalled":
        action = p.Stalled()
    elif name == "ack":
        action = p.Ack(body["seq"])
    else:
        action = p.Snapshot(
            body["name"], body["metrics"], body["epochs"], body["status"], body["reason"], body["epoch"], body["phase"],
            p.Bar(**body["train"]), p.Bar(**body["valid"]), body["stride"], [_value(v) for v in body["history"]],
            body["latest_epoch"], [_value(v) for v in body["latest"]],
            [p.Best(b["epoch"], _value(b["value"])) for b in body["best"]], body["elapsed_ms"], body["timed_epochs"],
            body["last_seq"], body["goals"],
        )
    return p.Frame(m["training_id"], m["seq"], action)


def test_vectors_are_there():
    assert len(FILES) >= 15, f"no vectors in {VECTORS}"


@pytest.mark.parametrize("path", FILES, ids=lambda f: f.stem)
def test_vector_decodes_to_its_meaning(path):
    vector = json.loads(path.read_text())
    frame = p.decode(bytes.fromhex(vector["hex"]))
    assert meaning(frame) == json.loads(json.dumps(vector["frame"]))


@pytest.mark.parametrize("path", FILES, ids=lambda f: f.stem)
def test_vector_encodes_to_its_bytes(path):
    vector = json.loads(path.read_text())
    assert p.encode(from_meaning(vector["frame"])).hex() == vector["hex"]
    assert p.encode(p.decode(bytes.fromhex(vector["hex"]))).hex() == vector["hex"]


def test_default_goals_from_names_agree_with_the_crate():
    defaults = json.loads((VECTORS / "goals.json").read_text())["defaults"]
    assert len(defaults) >= 20
    for d in defaults:
        assert p.goal_from_name(d["name"]) == d["goal"], d


def test_version_1_frames_decode_with_goals_from_the_names():
    # A version 1 register (no goals field) and snapshot, as protocol/tests/loopback.rs writes them.
    reg = p.decode(bytes([1, 0, 0, 0, 5]) + b"mnist" + bytes([2]) + b"k1" + bytes([2, 4]) + b"loss"
                   + bytes([3]) + b"acc" + bytes([0x0a, 0xac, 0x02]))
    assert reg.action == p.Register("mnist", "k1", ["loss", "acc"], 10, 300, [])
    snap = bytes.fromhex("01090008" "0174" "01016c" "03" "01" "00" "01" "01" "050a" "0204" "01"
                         "020000003f0000803e" "0101" "010000803e" "01010000803e" "d00f" "02" "ac02")
    s = p.decode(snap).action
    assert s.goals == ["none"] and math.isnan(s.best[0].value), s
    # Encoders write version 2, with the goals.
    assert p.encode(p.decode(snap))[0] == 2
    assert p.encode(p.decode(snap)).endswith(bytes([1, 0]))


def _rejects():
    # Read at collection: a missing file is an error, not zero cases.
    return json.loads((VECTORS / "reject.json").read_text())["reject"]


@pytest.mark.parametrize("entry", _rejects(), ids=lambda e: e["name"])
def test_reject_list(entry):
    with pytest.raises(p.DecodeError) as caught:
        p.decode(bytes.fromhex(entry["hex"]))
    assert caught.value.kind == entry["error"]


def test_reject_list_is_there():
    assert len(_rejects()) >= 10


def test_doc_example_bytes():
    frame = p.Frame(7, 42, p.Progress("valid", 2, 10, 5, 12))
    assert list(p.encode(frame)) == [2, 7, 42, 1, 1, 2, 10, 5, 12]


def test_long_strings_are_cut_at_a_character_boundary():
    frame = p.Frame(1, 1, p.Log("info", "é" * 100))
    back = p.decode(p.encode(frame))
    assert back.action.text == "é" * 48


def test_too_many_values_do_not_encode():
    with pytest.raises(p.EncodeError):
        p.encode(p.Frame(1, 1, p.Stats(0, 0, [1.0] * 9)))


def test_garbage_only_ever_raises_decode_error():
    import random

    rng = random.Random(7)
    seeds = [bytes.fromhex(json.loads(f.read_text())["hex"]) for f in FILES]
    for _ in range(20000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.randint(0, 2)
            if op == 0 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op == 1 and data:
                del data[rng.randrange(len(data)):]
            else:
                data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
        try:
            frame = p.decode(bytes(data))
        except p.DecodeError:
            continue
        # Whatever decodes encodes back to the same bytes, unless it held a non-canonical varint or NaN payload.
        p.encode(frame)


def test_limits_match_the_crates():
    """The package's copy of every limit equals the crate's, from protocol/vectors/limits.json.

    The package keeps its own constants (it is installed alone, without the repository);
    this test is what keeps them from drifting.
    """
    limits = json.loads((VECTORS / "limits.json").read_text())["protocol"]
    ours = {
        "format_version": p.FORMAT_VERSION,
        "max_frame_len": p.MAX_FRAME_LEN,
        "max_metrics": p.MAX_METRICS,
        "max_name_len": p.MAX_NAME_LEN,
        "max_metric_name_len": p.MAX_METRIC_NAME_LEN,
        "max_run_key_len": p.MAX_RUN_KEY_LEN,
        "max_log_len": p.MAX_LOG_LEN,
        "max_reason_len": p.MAX_REASON_LEN,
        "history_values": p.HISTORY_VALUES,
    }
    assert {k: limits[k] for k in ours} == ours
