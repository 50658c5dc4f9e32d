"""``xnorflow sim``: run a compiled model on the simulated accelerator, check it bit-exactly.

Every image goes through the RTL (Verilator's C++ harness or Amaranth's simulator) via the
same :class:`sw.driver.Accelerator` code a board uses; the integers that come back are compared
with the golden model (:mod:`sw.golden`), all of them, and the predictions with PyTorch when
a checkpoint is given. One JSON document on stdout with ``--json``; progress on stderr.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from sw.errors import XnorflowError

__all__ = ["simulate", "add_parser", "run_sim"]


def _open(engine, cfg):
    from sw.driver import open_transport
    from sim.tops import accelerator_spec
    # The Amaranth simulator moves a whole batch in one transact_many: allow for it.
    kw = {"max_cycles": 50_000_000} if engine == "amaranth" else {}
    return open_transport(engine, accelerator_spec(cfg), **kw)


def _worker(model, x, engine, cfg, step, transport, bar):
    """Run ``x`` on one simulator instance; returns (ints, per-batch counters, cycles)."""
    from sw.driver import Accelerator
    own = transport is None
    if own:
        transport = _open(engine, cfg)
    try:
        acc = Accelerator(transport, cfg)
        acc.load(model)
        start = transport.cycles or 0
        outs = []
        for s in range(0, len(x), step):
            ints, _ = acc.run(x[s:s + step], batch=step)
            outs.append(ints)
            if bar is not None:
                bar.update(len(ints))
        return outs, acc.batches, (transport.cycles or 0) - start
    finally:
        if own:
            transport.close()


def simulate(model, x, y=None, *, engine="verilator", config=None, batch=None, progress=True,
             transport=None, torch_predictions=None, jobs=1):
    """Run ``x`` (uint8 [B, N]) through ``model`` on the simulated accelerator.

    ``jobs`` > 1 splits the images over that many simulator processes (Verilator), one per
    core: each loads the model and runs its share; the counters and cycles add up.

    Returns the result dict of ``xnorflow sim --json``: ``images``, ``mismatches`` (integers
    differing from the golden model), ``mismatched_images``, ``accuracy`` (None without
    labels), ``agree_with_torch`` (None without ``torch_predictions``), ``cycles_per_inference``
    (the core's own counters, mean over images), ``cycles_by_layer`` (per inference),
    ``predicted_cycles_match`` (the counters equal ``sw.program.predict_cycles``),
    ``simulated_cycles`` (every clock cycle, link traffic included, all jobs),
    ``wall_seconds``, ``simulated_cycles_per_second`` and ``images_per_second``.
    """
    from concurrent.futures import ThreadPoolExecutor
    from hw.config import ArrayConfig
    from sw import program
    cfg = ArrayConfig() if config is None else ArrayConfig.parse(config)
    x = np.asarray(x)
    n = len(x)
    try:
        limit = program.max_batch(model.layers, cfg)
        program.build_program(model.layers, cfg)  # fits? (names the layer if not)
    except program.ProgramError as e:
        raise XnorflowError(f"model '{model.name}' does not fit the {cfg} build: {e}") from None
    step = min(batch or limit, limit)
    jobs = max(1, min(jobs, -(-n // step) if n else 1))
    own_all = transport is None
    if transport is not None:
        jobs = 1
    # Contiguous shares of whole batches, so the batches are the same as with one job.
    per = -(-(-(-n // step)) // jobs) * step
    shares = [x[k:k + per] for k in range(0, n, per)] or [x[:0]]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, unit="img", file=sys.stderr, desc=f"sim {engine}")
    t0 = time.monotonic()
    # Builds happen before the clock starts (the cached harness is shared by the jobs).
    if engine == "verilator" and transport is None:
        from sim.build import build_harness
        from sim.tops import accelerator_spec
        build_harness(accelerator_spec(cfg))
    t_build = time.monotonic() - t0
    import resource
    # CPU time is the load-independent figure on a shared machine: the simulator processes
    # (children, counted once they have exited) and this process (framing, golden model).
    ru_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    ru_self = resource.getrusage(resource.RUSAGE_SELF)
    t1 = time.monotonic()
    if len(shares) == 1:
        results = [_worker(model, shares[0], engine, cfg, step, transport, bar)]
    else:
        with ThreadPoolExecutor(len(shares)) as pool:  # the simulators run in processes
            results = list(pool.map(lambda share: _worker(model, share, engine, cfg, step,
                                                          None, bar), shares))
    wall = time.monotonic() - t1
    ru_c = resource.getrusage(resource.RUSAGE_CHILDREN)
    ru_s = resource.getrusage(resource.RUSAGE_SELF)
    sim_cpu = (ru_c.ru_utime + ru_c.ru_stime - ru_children.ru_utime - ru_children.ru_stime)
    host_cpu = ru_s.ru_utime + ru_s.ru_stime - ru_self.ru_utime - ru_self.ru_stime
    if bar is not None:
        bar.close()
    outs = [o for r in results for o in r[0]]
    batches = [b for r in results for b in r[1]]
    sim_cycles = sum(r[2] for r in results)
    ints = np.concatenate(outs) if outs else np.zeros((0, model.num_classes), np.int64)
    golden = model.forward(x)[-1][0]
    pred = model.head.scores(ints).argmax(axis=1)
    total = sum(b["total"] for b in batches)
    by_layer = {layer.name: sum(b["by_layer"][layer.name] for b in batches) / max(n, 1)
                for layer in model.layers}
    predicted_ok = all(b["total"] == b["predicted"]["total"]
                       and b["by_layer"] == b["predicted"]["by_layer"] for b in batches)
    return {
        "model": model.name,
        "engine": engine,
        "array": cfg.format(),
        "images": int(n),
        "batch": int(step),
        "jobs": len(results),
        "mismatches": int((ints != golden).sum()),
        "mismatched_images": int((ints != golden).any(axis=1).sum()),
        "accuracy": None if y is None else float((pred == np.asarray(y)).mean()) if n else 0.0,
        "agree_with_torch": (None if torch_predictions is None
                             else float((pred == np.asarray(torch_predictions)).mean())),
        "cycles_per_inference": total / n if n else 0.0,
        "cycles_by_layer": by_layer,
        "predicted_cycles_match": bool(predicted_ok),
        "simulated_cycles": int(sim_cycles),
        "build_seconds": round(t_build, 3),
        "wall_seconds": round(wall, 3),
        "simulated_cycles_per_second": sim_cycles / wall if wall > 0 else None,
        "images_per_second": n / wall if wall > 0 else None,
        # Verilator only (Amaranth simulates in this process): CPU seconds of the harness
        # processes, and their cycles per CPU second, which do not depend on the machine load.
        "simulator_cpu_seconds": round(sim_cpu, 3) if engine == "verilator" and own_all else None,
        "host_cpu_seconds": round(host_cpu, 3),
        "simulated_cycles_per_cpu_second": (sim_cycles / sim_cpu if engine == "verilator"
                                            and own_all and sim_cpu > 0 else None),
    }


def add_parser(sub):
    p = sub.add_parser("sim", help="run a compiled model on the simulated accelerator (RTL), "
                                   "checked bit-exactly against the golden model")
    p.add_argument("model", help="a compiled model (.xnf)")
    p.add_argument("--dataset", required=True, help="digits, fashion-mnist or mnist")
    p.add_argument("--data-dir", default=None, help="directory of IDX files")
    p.add_argument("--engine", choices=("verilator", "amaranth"), default="verilator",
                   help="Verilator C++ harness (fast, default) or Amaranth's simulator")
    p.add_argument("--limit", type=int, default=None, help="only the first N test images")
    p.add_argument("--array", default=None,
                   help="accelerator build, PxQxK[,key=value...] (default 8x8x32)")
    p.add_argument("--batch", type=int, default=None,
                   help="images per run (default: as many as the build's memories hold)")
    p.add_argument("--jobs", type=int, default=1,
                   help="simulator processes (Verilator), e.g. one per core")
    p.add_argument("--checkpoint", default=None,
                   help="the training checkpoint (model.pt): report agreement with PyTorch")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run_sim)


def run_sim(args):
    from sw import xnf
    from sw.evaluate import dataset_inputs
    model = xnf.load(args.model)
    x, y = dataset_inputs(model, args.dataset, args.data_dir, args.limit)
    torch_pred = None
    if args.checkpoint:
        from sw.evaluate import torch_predictions
        from sw.train.checkpoint import load_checkpoint
        torch_pred = torch_predictions(load_checkpoint(args.checkpoint)[0], x)
    try:
        result = simulate(model, x, y, engine=args.engine, config=args.array, batch=args.batch,
                          torch_predictions=torch_pred, jobs=args.jobs)
    except ValueError as e:  # ProgramError and config errors: the model does not fit
        raise XnorflowError(str(e)) from None
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        line = (f"{result['images']} images on {result['engine']} ({result['array']}): "
                f"{result['mismatches']} integer mismatches vs golden, accuracy "
                f"{100 * result['accuracy']:.2f} %, {result['cycles_per_inference']:.0f} cycles "
                f"per inference")
        if torch_pred is not None:
            line += f", agreement with PyTorch {100 * result['agree_with_torch']:.2f} %"
        print(line)
    ok = result["mismatches"] == 0 and (torch_pred is None or result["agree_with_torch"] == 1.0)
    if not ok:
        print("xnorflow sim: the RTL disagrees with the golden model or PyTorch: this is a bug",
              file=sys.stderr)
    return 0 if ok else 1
