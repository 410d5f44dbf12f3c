"""The client against the real relay on loopback: the happy path, and every way the relay can fail."""

import math
import socket
import threading
import time

import pytest

import watchtrain
from conftest import network_calls_on_this_thread, run_python, wait_for

METRICS = ["train_loss", "valid_loss", "accuracy"]


def values(epoch):
    return {"train_loss": 1.0 / (epoch + 1), "valid_loss": 1.2 / (epoch + 1), "accuracy": 0.5 + epoch / 100}


def assert_every_epoch_once(relay, training_id, epochs):
    rows = relay.history(training_id)
    assert [r[0] for r in rows] == list(range(epochs)), rows
    for epoch, *vals in rows:
        want = values(epoch)
        assert vals == pytest.approx([want[m] for m in METRICS], rel=1e-6)


def test_register_progress_stats_finish(relay):
    run = watchtrain.Run(relay.url, name="happy path", metrics=METRICS, epochs=4, batches=20, progress_interval=0.01)
    for epoch in run.epochs():
        for _ in run.track(range(20)):
            time.sleep(0.002)
        for _ in run.track(range(5), phase="valid"):
            pass
        run.log_epoch(epoch, **values(epoch))
    run.log("done", level="warn")
    run.finish()
    assert run.close()
    state = relay.state(run.training_id)
    assert state["name"] == "happy path"
    assert state["metrics"] == METRICS
    assert state["status"] == "completed"
    assert state["epochs"] == 4 and state["latest_epoch"] == 3
    assert state["train"] == {"done": 20, "total": 20}
    assert state["valid"] == {"done": 5, "total": 5}
    assert state["last_seq"] == 4 + 1 + 1  # stats, the log line, the finish
    assert state["latest"]["accuracy"] == pytest.approx(0.53)
    assert_every_epoch_once(relay, run.training_id, 4)


def test_context_manager_reports_the_exception(relay):
    with pytest.raises(ZeroDivisionError):
        with watchtrain.Run(relay.url, name="crash") as run:
            run.log_epoch(0, loss=0.5)
            1 / 0
    state = relay.state(run.training_id)
    assert state["status"] == "failed"
    assert state["reason"] == "ZeroDivisionError: division by zero"
    assert state["metrics"] == ["loss"]


def test_keyboard_interrupt_is_cancelled(relay):
    with pytest.raises(KeyboardInterrupt):
        with watchtrain.Run(relay.url, name="ctrl-c") as run:
            raise KeyboardInterrupt
    assert relay.state(run.training_id)["status"] == "cancelled"


def test_relay_down_at_start(relay_factory):
    relay = relay_factory().down()  # nothing listens on its port until it starts again
    with network_calls_on_this_thread() as calls:
        run = watchtrain.Run(relay.url, name="late relay", metrics=METRICS, epochs=6, close_timeout=15)
        for epoch in range(3):
            for _ in run.track(range(50)):
                pass
            run.log_epoch(epoch, **values(epoch))
    assert calls == [], "a relay that is down must cost the training nothing"
    assert run.training_id == 0
    relay.start()
    for epoch in range(3, 6):
        run.log_epoch(epoch, **values(epoch))
    run.finish()
    assert run.training_id != 0
    assert relay.state(run.training_id)["status"] == "completed"
    assert_every_epoch_once(relay, run.training_id, 6)


def test_relay_killed_mid_training_and_restarted(relay_factory):
    relay = relay_factory().start()
    run = watchtrain.Run(relay.url, name="survivor", metrics=METRICS, epochs=12, close_timeout=15)
    wait_for(run.connected.is_set, what="first connection")
    for epoch in range(12):
        if epoch == 4:
            wait_for(lambda: len(relay.history(run.training_id)) == 4, what="epochs 0-3 stored")
            relay.pause()  # epochs 4 and 5 reach the relay's socket buffer, unread
        if epoch == 6:
            relay.kill()  # kill -9: no goodbye, the unread frames are gone
        if epoch == 8:
            relay.start()
        for _ in run.track(range(30)):
            pass
        run.log_epoch(epoch, **values(epoch))
        time.sleep(0.1)
    run.finish()
    state = relay.state(run.training_id)
    assert state["status"] == "completed"
    assert state["last_seq"] == 13
    assert_every_epoch_once(relay, run.training_id, 12)


def test_relay_paused_mid_training_costs_nothing_and_loses_nothing(relay):
    """SIGSTOP: the relay's socket accepts bytes into the kernel buffer but nobody reads or answers."""
    run = watchtrain.Run(relay.url, name="paused relay", metrics=METRICS, timeout=1.0, close_timeout=20)
    wait_for(run.connected.is_set, what="connection")
    relay.pause()
    try:
        with network_calls_on_this_thread() as calls:
            for epoch in range(20):
                for _ in run.track(range(200)):
                    pass
                run.log_epoch(epoch, **values(epoch))
                run.log(f"epoch {epoch} " + "x" * 80)
    finally:
        relay.resume()
    assert calls == [], "the training thread waited on the paused relay"
    run.finish()
    assert relay.state(run.training_id)["status"] == "completed"
    assert_every_epoch_once(relay, run.training_id, 20)


def test_relay_that_accepts_but_never_reads():
    """A listener that accepts TCP connections and never reads a byte: no WebSocket, no answer."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        with network_calls_on_this_thread() as calls:
            run = watchtrain.Run(f"http://127.0.0.1:{port}", name="black hole", timeout=60.0, close_timeout=0.5)
            for epoch in range(30):
                for _ in run.track(range(1000)):
                    pass
                run.log_epoch(epoch, loss=1.0 / (epoch + 1))
        t = time.perf_counter()
        delivered = run.close()
        closing = time.perf_counter() - t
    finally:
        stop.set()
        thread.join()
        for s in held:
            s.close()
        server.close()
    assert held, "the client never connected"
    assert not delivered
    assert calls == [], "the training thread waited on the black hole"
    # A close that waited for the black hole would spend the client's 60 s timeout; this bound only guards that.
    assert closing < 30, f"close() took {closing:.2f}s with a 0.5s timeout"


def test_buffer_is_bounded_while_the_relay_is_down(relay_factory):
    relay = relay_factory().down()
    run = watchtrain.Run(relay.url, name="bounded", buffer=32, close_timeout=0.2)
    for epoch in range(500):
        run.log_epoch(epoch, loss=float(epoch))
    assert len(run._pending) <= 32
    run.close()


def test_unreachable_urls_never_raise():
    for url in ["http://127.0.0.1:1", "http://localhost:1", "127.0.0.1:1"]:
        run = watchtrain.Run(url, name="unreachable", close_timeout=0.2)
        run.log_epoch(0, loss=1.0)
        run.progress(1, 10)
        run.finish()


def test_a_malformed_url_is_an_error_at_construction():
    for url in ["gopher://x", "http://[::1", "http://127.0.0.1:99999", "http://", "mnist", "http://h:0"]:
        with pytest.raises(ValueError, match="bad relay URL"):
            watchtrain.Run(url)
    # The name where the URL goes (the URL comes first, as in every callback): said clearly.
    with pytest.raises(ValueError, match="first argument is the relay URL"):
        watchtrain.Run("my experiment", epochs=3)


def test_an_empty_url_disables_sending_and_says_so_once(caplog):
    with caplog.at_level("WARNING", logger="watchtrain"):
        runs = [watchtrain.Run("", name="empty") for _ in range(2)]
    assert not any(run.enabled for run in runs)
    said = [r for r in caplog.records if "WATCHTRAIN_URL" in r.getMessage()]
    assert len(said) == 1, caplog.text
    with caplog.at_level("WARNING", logger="watchtrain"):
        caplog.clear()
        assert not watchtrain.Run("off", name="quiet").enabled
    assert caplog.records == []


def test_epochs_without_a_number_of_epochs_is_an_error():
    run = watchtrain.Run("off", name="no epochs")
    with pytest.raises(ValueError, match="needs the number of epochs"):
        run.epochs()
    assert list(run.epochs(3)) == [0, 1, 2]


def test_only_rank_zero_reports(relay):
    for rank in ("1", "0"):
        result = run_python(
            "import watchtrain\n"
            f"run = watchtrain.Run({relay.url!r}, name='rank {rank}')\n"
            "run.log_epoch(0, loss=0.5)\n"
            "print(run.enabled, run.close())\n",
            env={"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": "2"},
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [str(rank == "0"), "True"]
    assert [t["name"] for t in relay.trainings()] == ["rank 0"]


def test_a_long_failure_keeps_its_type_and_first_sentence(relay):
    error = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)")
    with pytest.raises(RuntimeError):
        with watchtrain.Run(relay.url, name="oom") as run:
            raise error
    state = relay.state(run.training_id)
    assert state["reason"] == "RuntimeError: CUDA out of memory."
    assert len(state["reason"].encode()) <= watchtrain.protocol.MAX_REASON_LEN
    long = watchtrain.reason_of(ValueError("Expected input batch_size (64) to match target batch_size (32)"))
    assert long.startswith("ValueError: Expected") and long.endswith("…")
    assert len(long.encode()) <= watchtrain.protocol.MAX_REASON_LEN
    assert watchtrain.reason_of(KeyError("x")) == "KeyError: 'x'"


def test_off_is_a_no_op():
    run = watchtrain.Run("off", name="off")
    assert not run.enabled
    assert list(run.track(range(3))) == [0, 1, 2]
    run.log_epoch(0, loss=1.0)
    assert run.close()


def test_environment_configures_the_run(relay):
    env = {"WATCHTRAIN_URL": relay.url, "WATCHTRAIN_NAME": "from env", "WATCHTRAIN_RUN_KEY": "env-key"}
    ids = []
    for epoch in range(2):  # the same run key: the second process continues the first one's training
        result = run_python(
            "import watchtrain\n"
            "run = watchtrain.Run()\n"
            f"run.log_epoch({epoch}, loss=0.25)\n"
            "run.finish()\n"
            "print(run.training_id)\n",
            env=env,
        )
        assert result.returncode == 0, result.stderr
        ids.append(int(result.stdout))
    assert ids[0] == ids[1] != 0
    state = relay.state(ids[0])
    assert state["name"] == "from env" and state["status"] == "completed"
    assert [r[0] for r in relay.history(ids[0])] == [0, 1]


def test_atexit_reports_an_uncaught_exception(relay):
    result = run_python(
        "import watchtrain\n"
        f"run = watchtrain.Run({relay.url!r}, name='dies')\n"
        "run.log_epoch(0, loss=0.5)\n"
        "print(run.training_id, flush=True)\n"
        "raise RuntimeError('CUDA out of memory')\n"
    )
    assert result.returncode == 1
    assert "CUDA out of memory" in result.stderr
    training_id = wait_for(lambda: [t["id"] for t in relay.trainings() if t["name"] == "dies"], what="training")[0]
    state = relay.state(training_id)
    assert state["status"] == "failed"
    assert state["reason"] == "RuntimeError: CUDA out of memory"


def test_atexit_completes_a_script_that_just_ends(relay):
    result = run_python(
        "import watchtrain\n"
        f"run = watchtrain.Run({relay.url!r}, name='ends')\n"
        "for e in range(3): run.log_epoch(e, loss=1 / (e + 1))\n"
    )
    assert result.returncode == 0, result.stderr
    [training] = [t for t in relay.trainings() if t["name"] == "ends"]
    assert training["status"] == "completed"
    assert len(relay.history(training["id"])) == 3


def test_same_run_key_continues_after_a_producer_restart(relay):
    for part in range(2):
        result = run_python(
            "import watchtrain\n"
            f"run = watchtrain.Run({relay.url!r}, name='resumed', run_key='resume-me', metrics=['loss'])\n"
            f"for e in range({part * 3}, {part * 3 + 3}): run.log_epoch(e, loss=1 / (e + 1))\n"
            "run.close()\n"
            "print(run.training_id)\n"
        )
        assert result.returncode == 0, result.stderr
    training_id = int(result.stdout)
    assert [r[0] for r in relay.history(training_id)] == [0, 1, 2, 3, 4, 5]
    assert relay.state(training_id)["last_seq"] == 6


def test_token(relay_factory, caplog):
    relay = relay_factory("--token", "s3cret", "--consumer-token", "look").start()
    good = watchtrain.Run(relay.url, name="with token", token="s3cret")
    good.log_epoch(0, loss=1.0)
    assert good.close(timeout=5)
    assert relay.state(good.training_id, token="s3cret")["latest"] == {"loss": 1.0}
    for token, reason in [(None, "this relay needs a token"), ("wrong", "wrong token"),
                          ("look", "a consumer token cannot publish")]:
        caplog.clear()
        with caplog.at_level("WARNING", logger="watchtrain"):
            bad = watchtrain.Run(relay.url, name="refused", token=token, close_timeout=30)
            bad.log_epoch(0, loss=1.0)
            # A refusal is said once, with the relay's reason, and the sender stops instead of retrying.
            wait_for(lambda: not bad._thread.is_alive(), what="the sender to stop")
            assert not bad.close()
        said = [r.getMessage() for r in caplog.records if reason in r.getMessage()]
        assert len(said) == 1, caplog.text
        assert "refused (HTTP 40" in said[0], said
        assert not any("unreachable" in r.getMessage() for r in caplog.records), caplog.text
        assert bad.training_id == 0


def test_non_finite_values_arrive(relay):
    run = watchtrain.Run(relay.url, name="nan", metrics=["loss", "grad"])
    run.log_epoch(0, loss=math.nan, grad=math.inf)
    run.finish()
    frame_values = relay.history(run.training_id)[0][1:]
    assert math.isnan(frame_values[0]) and frame_values[1] == math.inf


def test_a_rejected_frame_is_logged_and_does_not_stop_the_others(relay, caplog):
    run = watchtrain.Run(relay.url, name="rejected", metrics=["loss"])
    run.log_epoch(0, loss=1.0)
    run._enqueue(watchtrain.protocol.Stats(1, 0, [1.0, 2.0]))  # two values for one metric
    run.log_epoch(2, loss=0.5)
    with caplog.at_level("WARNING", logger="watchtrain"):
        run.finish()
    assert any("rejected a frame" in r.getMessage() for r in caplog.records), caplog.text
    state = relay.state(run.training_id)
    assert state["status"] == "completed"
    assert [r[0] for r in relay.history(run.training_id)] == [0, 2]


def frames_in(relay):
    for line in relay.get("/metrics").splitlines():
        if line.startswith("watchtrain_frames_in_total "):
            return float(line.split()[1])
    raise AssertionError("no frames_in counter")


def test_progress_is_coalesced_and_rate_limited(relay):
    run = watchtrain.Run(relay.url, name="coalesced", progress_interval=0.25)
    wait_for(run.connected.is_set, what="connection")
    before = frames_in(relay)
    started = time.monotonic()
    batches = 0
    while time.monotonic() - started < 2.0:
        for _ in run.track(range(100_000)):
            batches += 1
    elapsed = time.monotonic() - started
    run.close()
    sent = frames_in(relay) - before
    # Millions of batches: at most one progress per 0.25 s, plus the last one at close.
    assert batches > 100_000
    assert sent <= elapsed / 0.25 + 3, f"{sent} frames in {elapsed:.2f}s"
    assert relay.state(run.training_id)["train"] == {"done": 100_000, "total": 100_000}


def test_tls_relay_with_its_own_certificate_authority(relay_factory, tmp_path):
    import shutil
    import subprocess

    assert shutil.which("openssl"), "openssl makes the test certificate (apt-get install openssl; the test suites install it)"
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    relay = relay_factory("--tls-cert", str(cert), "--tls-key", str(key))
    relay.start(scheme="https", ca_file=str(cert))
    url = relay.url
    untrusted = watchtrain.Run(url, name="untrusted", close_timeout=0.5)
    untrusted.log_epoch(0, loss=1.0)
    assert not untrusted.close(), "a certificate nobody trusts must be refused"
    run = watchtrain.Run(url, name="over tls", ca_file=str(cert))
    run.log_epoch(0, loss=0.5)
    run.finish()
    assert run.training_id != 0
    assert [t["status"] for t in relay.trainings() if t["name"] == "over tls"] == ["completed"]


def test_a_frame_is_delivered_only_when_acknowledged():
    """A peer that takes the WebSocket, acknowledges the registration, reads every frame and
    answers the close, but acknowledges no frame: it stands for a relay that lost them."""
    import base64
    import hashlib

    from watchtrain.transport import OP_CLOSE, WebSocket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    frames = []

    def peer():
        conn, _ = server.accept()
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        key = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key")][0]
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        ws = WebSocket.__new__(WebSocket)  # the package's framing, on the server's side of the socket
        ws.sock, ws._buf, ws.timeout = conn, head.split(b"\r\n\r\n", 1)[1], 5.0
        try:
            while True:
                for message in ws.poll(5.0):
                    frames.append(watchtrain.protocol.decode(message))
                    if len(frames) == 1:  # the registration: acknowledged, as the relay does
                        ack = watchtrain.protocol.Frame(7, 0, watchtrain.protocol.Ack(0))
                        ws._send_frame(2, watchtrain.protocol.encode(ack))
        except OSError:  # the client's close: answer it
            try:
                ws._send_frame(OP_CLOSE, b"\x03\xe8")
            except OSError:
                pass
        finally:
            conn.close()

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    run = watchtrain.Run(f"http://127.0.0.1:{port}", name="lost", close_timeout=1.0)
    run.log_epoch(0, loss=0.5)
    wait_for(lambda: any(isinstance(f.action, watchtrain.protocol.Stats) for f in frames), what="the stats at the peer")
    assert not run.close(), "written to the socket is not delivered: only an Ack is"
    thread.join(10)
    server.close()


def test_adapters_name_a_run_from_the_environment_before_the_model(monkeypatch):
    from watchtrain._adapter import make_run

    monkeypatch.setenv("WATCHTRAIN_NAME", "sweep 3")
    assert make_run("off", None, None, "LitModel")._register.name == "sweep 3"
    assert make_run("off", None, "explicit", "LitModel")._register.name == "explicit"
    monkeypatch.delenv("WATCHTRAIN_NAME")
    assert make_run("off", None, None, "LitModel")._register.name == "LitModel"
    assert not make_run("http://127.0.0.1:1", None, None, "x", primary=False).enabled


def test_declared_goals_reach_the_relay_and_a_learning_rate_has_no_best(relay):
    # `score` has no goal by its name: declared maximized; `lr` none; `loss` from its name.
    run = watchtrain.Run(relay.url, name="goals", metrics=["score", "lr", "loss"], goals={"score": "max", "lr": None})
    run.log_epoch(0, score=1.0, lr=0.1, loss=0.9)
    run.log_epoch(1, score=3.0, lr=0.01, loss=0.5)
    run.log_epoch(2, score=2.0, lr=0.001, loss=0.7)
    run.finish()
    assert run.close()
    state = relay.state(run.training_id)
    assert state["goals"] == ["max", "none", "min"], state
    assert state["best"][0] == {"epoch": 1, "value": 3.0}, state
    assert state["best"][1] is None, state
    assert state["best"][2]["value"] == pytest.approx(0.5), state


def test_goals_found_later_with_the_metrics(relay):
    # No metrics at construction: `log_epoch` registers them, with the declared goals.
    run = watchtrain.Run(relay.url, name="later", goals={"error_rate": "maximize"})
    run.log_epoch(0, error_rate=0.2, lr=0.1)
    run.log_epoch(1, error_rate=0.4, lr=0.2)
    run.finish()
    assert run.close()
    state = relay.state(run.training_id)
    assert state["goals"] == ["max", "none"], state
    assert state["best"][0]["value"] == pytest.approx(0.4) and state["best"][1] is None, state


@pytest.mark.parametrize("goals", [{"loss": "down"}, {"loss": 1}, ["loss"]])
def test_an_unknown_goal_is_an_error_at_construction(goals):
    with pytest.raises(ValueError, match="goal"):
        watchtrain.Run("off", name="x", goals=goals)


def test_adapters_check_goals_at_construction():
    # The adapters import their framework; the check itself is shared and needs none.
    from watchtrain.client import checked_goals

    assert checked_goals({"acc": "MAX", "loss": "minimize", "lr": "none"}) == {"acc": "max", "loss": "min", "lr": "none"}
    with pytest.raises(ValueError):
        checked_goals({"acc": "highest"})
