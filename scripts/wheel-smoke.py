#!/usr/bin/env python3
"""The relay and CLI wheels on a machine without Rust: a fresh venv, `pip install
"watchtrain[relay,cli]"` from folders of wheels (no index; the Python package's extras pull
in the binary wheels), then `watchtrain-relay --demo` answers /healthz and lists its
training, `watchtrain --help` runs, and the Python package imports. Everything runs with a clean environment whose
PATH has no cargo or rustc. Prints the wheel sizes and the seconds from `pip install` to a
running demo. Loopback only; standard library only.

    scripts/wheel-smoke.py dist/wheels/watchtrain_relay-...whl dist/wheels/watchtrain_cli-...whl \
        python-wheels/watchtrain-0.1.0-py3-none-any.whl

With --venv DIR the venv is kept there (for more checks on the installed binaries).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request


def fail(what):
    print(f"wheel-smoke: {what}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("wheels", nargs="+", help="the relay's and the CLI's wheels, and the watchtrain "
                        "package's (all from folders pip may search)")
    parser.add_argument("--venv", help="where to make the venv (default: a temporary folder)")
    opts = parser.parse_args()
    work = tempfile.mkdtemp(prefix="wheel-smoke-")
    venv = os.path.abspath(opts.venv or os.path.join(work, "venv"))
    home = os.path.join(work, "home")
    os.makedirs(home)
    # The clean environment: no ~/.cargo/bin, no inherited variables.
    path = os.pathsep.join([os.path.join(venv, "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
    env = {"HOME": home, "PATH": path, "LANG": "C.UTF-8"}
    for tool in ("cargo", "rustc"):
        if shutil.which(tool, path=path):
            fail(f"{tool} is on the clean PATH ({shutil.which(tool, path=path)})")
    print("  ok  no cargo or rustc on the clean PATH", flush=True)
    for w in opts.wheels:
        print(f"  wheel {os.path.basename(w)}: {os.path.getsize(w):,} bytes", flush=True)

    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    made = time.monotonic()
    subprocess.run([python, "-m", "venv", venv], env=env, check=True)
    start = time.monotonic()
    made = start - made
    # `pip install "watchtrain[relay,cli]"`: the Python package's extras pull in the binary wheels.
    folders = sorted({os.path.dirname(os.path.abspath(w)) for w in opts.wheels})
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "--disable-pip-version-check",
                    "--no-index", *[f"--find-links={f}" for f in folders], "watchtrain[relay,cli]"],
                   env=env, check=True)
    installed = time.monotonic() - start
    relay_bin = shutil.which("watchtrain-relay", path=path)
    cli_bin = shutil.which("watchtrain", path=path)
    if not (relay_bin and relay_bin.startswith(venv) and cli_bin and cli_bin.startswith(venv)):
        fail(f"the wheels did not put both commands in the venv: {relay_bin}, {cli_bin}")
    print(f"  ok  pip install put watchtrain-relay and watchtrain in {venv}/bin ({installed:.1f}s)", flush=True)

    db = os.path.join(work, "relay.sqlite3")
    relay = subprocess.Popen(["watchtrain-relay", "--demo", "--listen", "127.0.0.1:0", "--db", db],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        addr = None
        out = ""
        deadline = time.monotonic() + 60
        while addr is None and time.monotonic() < deadline:
            line = relay.stdout.readline()
            if not line:
                fail(f"the relay exited {relay.wait()}: {out}{relay.stderr.read()}")
            out += line
            m = re.search(r"listening on (\S+)", line)
            addr = m and m.group(1)
        if addr is None:
            fail(f"the relay did not say where it listens: {out}")
        while True:
            try:
                with urllib.request.urlopen(f"http://{addr}/healthz", timeout=5) as r:
                    health = r.read().decode().strip()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        running = time.monotonic() - start
        if health != "ok":
            fail(f"/healthz said {health!r}")
        print(f"  ok  watchtrain-relay --demo answers /healthz: {running:.1f}s after pip install began", flush=True)
        while True:
            with urllib.request.urlopen(f"http://{addr}/v1/trainings", timeout=5) as r:
                trainings = json.load(r)
            if trainings or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if not any("demo" in t.get("name", "") for t in trainings):
            fail(f"no demo training on /v1/trainings: {trainings}")
        print(f"  ok  GET /v1/trainings lists {trainings[0]['name']!r}", flush=True)
        cli = subprocess.run(["watchtrain", "--help"], env=env, capture_output=True, text=True, timeout=60)
        if cli.returncode != 0 or "tail" not in cli.stdout:
            fail(f"watchtrain --help: {cli.returncode} {cli.stdout}{cli.stderr}")
        print("  ok  watchtrain --help", flush=True)
        py = subprocess.run(["python", "-c", "import watchtrain; print(watchtrain.__file__)"], env=env,
                            capture_output=True, text=True, timeout=60)
        if py.returncode != 0 or not py.stdout.startswith(venv):
            fail(f"import watchtrain: {py.stdout}{py.stderr}")
        print("  ok  the Python package imports from the venv", flush=True)
    finally:
        relay.terminate()
        code = relay.wait(timeout=30)
    if code != 0:
        fail(f"the relay exited {code} on SIGTERM: {relay.stderr.read()}")
    print("  ok  SIGTERM stops the relay with status 0", flush=True)
    print(f"wheel-smoke: pip install to a running demo in a fresh venv: {running:.1f}s "
          f"(install {installed:.1f}s; making the venv before it {made:.1f}s)")
    if not opts.venv:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
