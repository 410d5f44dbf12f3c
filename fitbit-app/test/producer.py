"""A real producer for the simulator test: the watchtrain Python package, driven by
JSON lines on stdin (one command each), answering one JSON line per command."""
import json
import sys
import time

import watchtrain

run = None
for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd["op"]
    if op == "start":
        run = watchtrain.Run(
            name=cmd["name"], metrics=cmd["metrics"], epochs=cmd["epochs"], batches=cmd["batches"],
            url=cmd["url"], token=cmd["token"], run_key=cmd["run_key"], progress_interval=0.02,
        )
    elif op == "progress":
        run.progress(cmd["batch"], cmd["batches"], epoch=cmd["epoch"], phase=cmd.get("phase", "train"))
    elif op == "stats":
        run.stats(cmd["epoch"], [float(v) for v in cmd["values"]], duration=cmd.get("duration", 1.0))
    elif op == "finish":
        run.finish(cmd.get("outcome", "completed"), cmd.get("reason", ""))
    elif op == "connected":
        run.connected.wait(cmd.get("timeout", 10))
    elif op == "sleep":
        time.sleep(cmd["seconds"])
    print(json.dumps({"ok": True, "training_id": run.training_id if run else 0}), flush=True)
