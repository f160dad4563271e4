"""A stand-in for a training script: no dependencies, a second or less per run.

Its "validation accuracy" peaks at lr = 0.01 and wd = 1e-4, with a little
deterministic noise per fold, so a best-of phase has a clear winner. Like a
real script it prints progress and reports its metrics as JSON in
$JOBDB_RESULT_FILE (when run by jobdb).
"""

import argparse
import json
import math
import os
import random
import time

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--wd", type=float, default=0.0)
parser.add_argument("--fold", type=int, default=-1)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--all-data", action="store_true")
args = parser.parse_args()

rng = random.Random(f"{args.lr}/{args.wd}/{args.fold}")
peak = 0.95 - 0.05 * (math.log10(args.lr) + 2) ** 2 - (0.01 if args.wd == 0 else 0.0)
curve = []
for epoch in range(1, args.epochs + 1):
    acc = peak * (1 - 0.5**epoch) + rng.uniform(-0.005, 0.005)
    curve.append(round(acc, 4))
    print(f"epoch {epoch}: val_acc {acc:.4f}", flush=True)
    time.sleep(0.05)

result = {"val_acc": curve[-1], "curve": curve}
if args.all_data:
    result["test_acc"] = round(curve[-1] - 0.01, 4)
path = os.environ.get("JOBDB_RESULT_FILE")
if path:
    with open(path, "w") as f:
        json.dump(result, f)
else:
    print(json.dumps(result))
