"""Same-run A/B of two checkouts: bench_pipeline.py's rates section, old and new alternated.

    .venv/bin/python bench/bench_ab.py --old /path/to/old-worktree --new . [--pairs 2]
        [--bench-args "--only rates --rates 0,1000 --pacings batched --clients light,redis,json"]

Each checkout has its own ``.venv`` made by its ``./scripts/setup``. The bench runs
``bench/bench_pipeline.py`` of the NEW checkout on the new checkout's interpreter every time,
with ``--streamer-python <checkout>/.venv/bin/python`` naming the install under test: old,
new, old, new, ... (``--pairs`` pairs). Only the children that run product code (the streamer
pipelines and the floor, which uses the source's transport) change install; the fake Bybit
(``streamer_bybit.simulator`` of the new checkout), redis-server, the bare json client that
every ratio divides by and the bench's measuring code are the same programs on both sides.

Why not each checkout's own bench_pipeline with the same arguments: an older checkout's bench
brings its own fake (before the simulator moved into the Bybit plugin: tests/fakebybit, one
pacing), its own child scripts (other measured windows and counters) and its own option
names, so the difference would mix bench and fake changes into the product's. Driving both
installs from one bench measures the product alone. The cost: the new bench's streamer
child imports the core's private modules (``streamer._runtime`` and others), so the old
install must still have them; if it does not, its runs fail and this bench says so.

Alternation (A B A B) spreads the load of a shared machine over both sides; the load average
before and after every run is in the summary. Per row: the median and range of CPU-s/100k
over all rounds of a side's runs, new/old, and the per-round ratio to the json client of
each side (a ratio within one round cancels most of the load). Verdict: "within noise" when
the two sides' ranges overlap, else better/worse by the medians' difference. The json row
compares the same program with itself: its spread is the noise of the session.

Writes one summary, ``bench/results/<UTC date>-<HHMM>-ab.md`` (committed as written, never
edited by hand), and the raw JSON of every run into ``bench/results/<UTC date>-<HHMM>-ab/``
(git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BENCH_ARGS = "--only rates --rates 0,1000 --pacings batched --clients light,redis,json"
#: bench_pipeline's client labels, for the rows (kept short here: the run's JSON has all).
LABELS = {"light": "streamer light, coalesce_ms 0", "light_c5": "streamer light, coalesce_ms 5",
          "redis": "streamer redis, coalesce_ms 0", "redis_c5": "streamer redis, coalesce_ms 5",
          "real": "streamer realistic, coalesce_ms 0", "real_c5": "streamer realistic, "
          "coalesce_ms 5", "json": "bare asyncio websockets + json (reference)",
          "orjson": "bare asyncio websockets + orjson", "floor": "floor, no coalescing",
          "floor_c5": "floor, coalescing 5 ms", "cryptofeed": "cryptofeed"}
#: Arguments bench_ab sets itself on every run.
OWN_ARGS = ("--streamer-python", "--json", "--summary")


def git(where: Path, *argv: str) -> str:
    return subprocess.run(["git", *argv], capture_output=True, text=True, cwd=where,
                          timeout=30, check=True).stdout.rstrip()


def checkout_state(where: Path) -> dict[str, Any]:
    """Commit, subject and uncommitted changes (tracked files) of a checkout."""
    dirty = [ln[3:] for ln in git(where, "status", "--porcelain",
                                  "--untracked-files=no").splitlines() if ln.strip()]
    return {"dir": str(where), "commit": git(where, "rev-parse", "HEAD"),
            "subject": git(where, "log", "-1", "--format=%s"), "dirty": dirty}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def fmt(sp: dict[str, float], spec: str, suffix: str = "") -> str:
    if not sp["n"]:
        return "-"
    return (f"{sp['median']:{spec}}{suffix} ({sp['min']:{spec}}-{sp['max']:{spec}}, "
            f"n={sp['n']})")


def rounds(values: list[float]) -> str:
    """Median (min-max, n) of per-round ratios, then each in run and round order."""
    return (f"{fmt(spread(values), '.2f', 'x')}: " + " ".join(f"{v:.2f}" for v in values)
            if values else "-")


def per_round(runs: dict[str, list[dict[str, Any]]], key: str
              ) -> tuple[list[float], list[float]]:
    """CPU-s/100k of ``key`` in each round of one block of one run, and its ratio to the json
    client of the same round."""
    json_by_round = {r["round"]: r["cpu_per_100k"] for r in runs.get("json", [])
                     if "cpu_per_100k" in r}
    cpu, ratio = [], []
    for r in runs.get(key, []):
        if "cpu_per_100k" not in r:
            continue  # a failed run: counted in the run's failures
        cpu.append(r["cpu_per_100k"])
        if r["round"] in json_by_round:
            ratio.append(r["cpu_per_100k"] / json_by_round[r["round"]])
    return cpu, ratio


def verdict(old: dict[str, float], new: dict[str, float], what: str) -> str:
    """"within noise" when the ranges overlap, else better/worse (lower is better) by the
    medians' difference."""
    if not old["n"] or not new["n"]:
        return f"{what}: no data"
    if new["min"] <= old["max"] and old["min"] <= new["max"]:
        return f"{what}: within noise (ranges overlap)"
    change = new["median"] / old["median"] - 1
    word = "better" if change < 0 else "worse"
    return f"{what}: {word}, {abs(change) * 100:.0f}% {'less' if change < 0 else 'more'}"


def child_errors(results: dict[str, Any]) -> int:
    """Client runs of a bench_pipeline run whose stderr had an ERROR line or a traceback."""
    return sum(1 for block in results.get("rates", {}).values()
               for runs in block["runs"].values() for r in runs if r.get("errors"))


def block_label(block: str) -> str:
    if block == "0":
        return "flat out"
    rate, _, pacing = block.partition("-")
    return f"{int(rate):,} msg/s, {pacing}"


class AB:
    def __init__(self, args: argparse.Namespace) -> None:
        self.old = Path(args.old).resolve()
        self.new = Path(args.new).resolve()
        self.pairs: int = args.pairs
        self.bench_args = shlex.split(args.bench_args)
        clash = [a for a in self.bench_args if a.split("=")[0] in OWN_ARGS]
        if clash:
            raise SystemExit(f"--bench-args: {clash} are set by bench_ab itself")
        self.started = time.time()
        stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime(self.started))
        self.summary = Path(args.summary) if args.summary else (
            ROOT / "bench" / "results" / f"{stamp}-ab.md")
        self.raw_dir = self.summary.with_suffix("")
        self.runs: list[dict[str, Any]] = []

    def python(self, checkout: Path) -> Path:
        py = checkout / ".venv" / "bin" / "python"
        if not py.exists():
            raise SystemExit(f"{py} missing: run ./scripts/setup in {checkout}")
        return py

    def command(self, side: str, index: int) -> list[str]:
        checkout = self.old if side == "old" else self.new
        raw = self.raw_dir / f"{index:02d}-{side}.json"
        return [str(self.python(self.new)), str(self.new / "bench" / "bench_pipeline.py"),
                *self.bench_args, "--streamer-python", str(self.python(checkout)),
                "--json", str(raw), "--summary", ""]

    def run(self) -> None:
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        self.states = {"old": checkout_state(self.old), "new": checkout_state(self.new)}
        order = ["old", "new"] * self.pairs
        for index, side in enumerate(order):
            argv = self.command(side, index)
            print(f"[{index + 1}/{len(order)}] {side}: {shlex.join(argv)}", flush=True)
            load0, t0 = os.getloadavg(), time.time()
            proc = subprocess.run(argv, cwd=self.new, timeout=3600, check=False)
            load1, t1 = os.getloadavg(), time.time()
            raw = Path(argv[argv.index("--json") + 1])
            results = json.loads(raw.read_text()) if raw.exists() else {}
            self.runs.append({"side": side, "argv": argv, "exit": proc.returncode,
                              "load": [load0, load1], "seconds": t1 - t0, "raw": raw,
                              "results": results})
            print(f"  exit {proc.returncode}, {t1 - t0:.0f} s, load {load0[0]:.2f} -> "
                  f"{load1[0]:.2f}", flush=True)
        self.summary.parent.mkdir(parents=True, exist_ok=True)
        self.summary.write_text(self.markdown())
        print(f"wrote {self.summary}")
        bad = [i + 1 for i, r in enumerate(self.runs)
               if r["exit"] or not r["results"] or r["results"].get("failures")
               or child_errors(r["results"])]
        if bad:
            raise SystemExit(f"runs {bad} failed or logged errors: see {self.summary}")

    def rows(self) -> list[str]:
        blocks: list[str] = []
        clients: list[str] = []
        for run in self.runs:
            for block, data in run["results"].get("rates", {}).items():
                blocks += [block] if block not in blocks else []
                clients += [k for k in data["runs"] if k not in clients]
        clients.sort(key=lambda k: list(LABELS).index(k) if k in LABELS else len(LABELS))
        out = ["| rates block | client | old CPU-s/100k | new CPU-s/100k | new / old | "
               "old x json (per round) | new x json (per round) | verdict |",
               "|---|---|---|---|---|---|---|---|"]
        for block in blocks:
            for key in clients:
                cpu: dict[str, list[float]] = {"old": [], "new": []}
                ratio: dict[str, list[float]] = {"old": [], "new": []}
                for run in self.runs:
                    data = run["results"].get("rates", {}).get(block)
                    if data is None:
                        continue
                    c, r = per_round(data["runs"], key)
                    cpu[run["side"]] += c
                    ratio[run["side"]] += r
                so, sn = spread(cpu["old"]), spread(cpu["new"])
                ro, rn = spread(ratio["old"]), spread(ratio["new"])
                change = (f"{sn['median'] / so['median']:.2f}x" if so["n"] and sn["n"]
                          else "-")
                if key != "json":
                    words = [verdict(so, sn, "CPU"), verdict(ro, rn, "x json")]
                else:
                    words = [verdict(so, sn, "the same program on both sides (the "
                                     "session's noise)").replace("better", "lower")
                             .replace("worse", "higher")]
                out.append(
                    f"| {block_label(block)} | {LABELS.get(key, key)} | {fmt(so, '.3f')} | "
                    f"{fmt(sn, '.3f')} | {change} | "
                    f"{rounds(ratio['old']) if key != 'json' else '1'} | "
                    f"{rounds(ratio['new']) if key != 'json' else '1'} | "
                    f"{'; '.join(words)} |")
        return out

    def markdown(self) -> str:
        def state(side: str) -> str:
            st = self.states[side]
            return (f"- {side}: `{st['dir']}` at `{st['commit']}` ({st['subject']})"
                    + (f", DIRTY: {', '.join(st['dirty'])}" if st["dirty"] else ", clean"))

        first: dict[str, Any] = next((r["results"] for r in self.runs if r["results"]), {})
        m = first.get("machine", {})
        versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
        lines = [
            f"# Same-run A/B {time.strftime('%Y-%m-%d %H:%M', time.gmtime(self.started))} UTC",
            "",
            "Written by `bench/bench_ab.py` (never edited by hand): `bench_pipeline.py` of the "
            "new checkout, run on the new checkout's interpreter, alternately with the "
            "streamer and floor children on the old and the new install "
            "(`--streamer-python`); the fake, redis-server and the json client are the same "
            "programs for both. CPU-s/100k: median (min-max, n) over every round of every run "
            "of a side; x json: per-round ratio to the json client of the same round. "
            "Verdict: within noise when the ranges overlap, else better/worse by the "
            "medians.",
            "",
            f"Command: `{shlex.join([sys.executable, *sys.argv])}`  ",
            f"Machine: {os.cpu_count()} CPUs, {cpu_model()}, {platform.platform()}, Python "
            f"{platform.python_version()}; bench install: {versions or '-'}.  ",
            f"{len(self.runs)} runs, {time.time() - self.started:.0f} s in all.",
            "",
            "Checkouts:",
            "",
            state("old"),
            state("new"),
            "",
            "Runs (load average 1/5/15 min before -> after each):",
            "",
        ]
        for i, run in enumerate(self.runs):
            res = run["results"]
            inst = res.get("streamer_install", {})
            failures = res.get("failures")
            errors = child_errors(res)
            lines.append(
                f"{i + 1}. {run['side']}: `{shlex.join(run['argv'])}`; exit {run['exit']}, "
                f"{run['seconds']:.0f} s; load {tuple(round(x, 2) for x in run['load'][0])} "
                f"-> {tuple(round(x, 2) for x in run['load'][1])}; streamer install "
                f"`{inst.get('git', {}).get('commit', '?')}`"
                + (", DIRTY" if inst.get("git", {}).get("dirty") else "")
                + f" ({', '.join(f'{k} {v}' for k, v in inst.get('versions', {}).items())})"
                + (f"; FAILURES: {json.dumps(failures)[:500]}" if failures else "")
                + (f"; {errors} client runs logged errors (in the raw JSON)" if errors else "")
                + ("; NO RESULTS" if not res else ""))
        lines += ["", "Settings of each rates block (every run): "
                  + "; ".join(f"{block_label(block)}: fake `--symbols {s['symbols']} --rate "
                              f"{s['rate']} --pacing {s['pacing']} --no-tickers`, window "
                              f"`{s['window']}`, {s['rounds']} rounds, clients "
                              f"{', '.join(s['clients'])}"
                              for block, s in ((k, v["summary"]["settings"])
                                               for k, v in first.get("rates", {}).items()))
                  + ".", ""]
        lines += self.rows()
        return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", required=True, help="the old checkout (with its .venv)")
    p.add_argument("--new", default=str(ROOT), help="the new checkout (default this one)")
    p.add_argument("--pairs", type=int, default=2, help="old/new pairs, alternated")
    p.add_argument("--bench-args", default=DEFAULT_BENCH_ARGS,
                   help="bench_pipeline.py's arguments, the same for every run "
                        f"(default {DEFAULT_BENCH_ARGS!r})")
    p.add_argument("--summary", default=None,
                   help="summary path (default bench/results/<UTC date>-<HHMM>-ab.md)")
    args = p.parse_args()
    if args.pairs < 1:
        p.error("--pairs: at least 1")
    AB(args).run()


if __name__ == "__main__":
    main()
