"""Per-batch cost of the watchtrain hot path next to tqdm's per-iteration cost, in one run.

    python bench/hotpath.py [--n 2000000]

Measures, in nanoseconds per iteration over a loop that does nothing else:
``for x in run.track(it)`` and ``run.progress(i, n)`` (the callback style of
the adapters) with the real relay up, with nothing listening (relay down),
and with the relay process stopped by SIGSTOP (accepts bytes, never answers);
``for x in tqdm(it)`` and ``bar.update(1)`` writing to a null file; and the
bare loop, subtracted from all of them. ``log_epoch`` is per call (2,000
calls). Best of ``--repeat`` runs each.
"""

from __future__ import annotations

import argparse
import io
import os
import pathlib
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))

import watchtrain  # noqa: E402
from relay_process import Relay  # noqa: E402


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000_000, help="iterations per measurement")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n, repeat = args.n, args.repeat
    items = range(n)

    def bare():
        for _ in items:
            pass

    base = best(bare, repeat)
    rows = []
    try:
        from tqdm import tqdm

        sink = open(os.devnull, "w")

        def with_tqdm():
            for _ in tqdm(items, file=sink):
                pass

        def with_tqdm_update():
            bar = tqdm(total=n, file=sink)
            update = bar.update
            for _ in items:
                update(1)
            bar.close()

        rows.append(("tqdm(it) per iteration, output to /dev/null", best(with_tqdm, repeat)))
        rows.append(("tqdm.update(1) per batch, output to /dev/null", best(with_tqdm_update, repeat)))
    except ImportError:
        print("(tqdm not installed: pip install tqdm)")

    with tempfile.TemporaryDirectory() as folder:
        relay = Relay(pathlib.Path(folder)).start()
        try:
            for label, setup in [
                ("relay up", lambda: None),
                ("relay down", relay.kill),
                ("relay stalled (SIGSTOP)", None),
            ]:
                if setup is None:
                    relay.start()
                    run = watchtrain.Run(relay.url, name="bench", metrics=["loss"], timeout=1.0, close_timeout=0.2)
                    while not run.connected.is_set():
                        time.sleep(0.01)
                    relay.pause()
                else:
                    setup()
                    run = watchtrain.Run(relay.url, name="bench", metrics=["loss"], timeout=1.0, close_timeout=0.2)
                    if label == "relay up":
                        while not run.connected.is_set():
                            time.sleep(0.01)

                def tracked():
                    for _ in run.track(items):
                        pass

                def callback_style():
                    progress = run.progress
                    for i in items:
                        progress(i, n)

                rows.append((f"run.track(it) per iteration, {label}", best(tracked, repeat)))
                rows.append((f"run.progress(i, n) per batch, {label}", best(callback_style, repeat)))
                epochs = 2000
                t = time.perf_counter()
                for e in range(epochs):
                    run.log_epoch(e, loss=1.0 / (e + 1))
                rows.append((f"run.log_epoch(...) per epoch, {label}", (time.perf_counter() - t) * n / epochs + base))
                if label.startswith("relay stalled"):
                    relay.resume()
                run.close()
        finally:
            relay.kill()

    print(f"python {sys.version.split()[0]}, {n:,} iterations, best of {repeat}; bare loop {base / n * 1e9:.1f} ns/it")
    print(f"{'what':<56} {'ns per call':>12}")
    for label, seconds in rows:
        print(f"{label:<56} {(seconds - base) / n * 1e9:>12.1f}")


if __name__ == "__main__":
    main()
