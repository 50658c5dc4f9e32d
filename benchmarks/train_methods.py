"""Benchmark every training method: test accuracy (mean ± std over seeds) and training time.

Prints ONE JSON document on stdout (progress goes to stderr), writes a bar chart PNG, and
appends every finished run as one JSON line to ``--runs-log`` so a long benchmark that is
interrupted still leaves its measurements behind. Parts can be run separately::

    python benchmarks/train_methods.py --datasets digits
    python benchmarks/train_methods.py --datasets fashion-mnist --methods irnet,rbnn --seeds 0
    python benchmarks/train_methods.py --from-log runs.jsonl   # table + chart from a log only
    python benchmarks/train_methods.py --cluster local:2        # one Dask task per run

With ``--cluster`` (docs/scale-out.md) each method x seed training is one Dask task on a
cluster's workers (each loads the dataset and sets its own torch threads); the runs of one
dataset and seed that share a cached teacher wait for the first of them, which trains it.

The Fashion-MNIST shape is the SFC network 784-256-256-256-10 (``--hidden``/``--input-bits``
default to the dataset defaults of :mod:`xnorflow.sw.train.methods`).
"""
import argparse
import json
import os
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from xnorflow.cluster import (TaskProgress, add_cluster_argument, completed,  # noqa: E402
                              open_client)
from xnorflow.sw.errors import XnorflowError  # noqa: E402

ALL_METHODS = ["irnet", "rbnn", "sbn", "bwnh", "ste", "fp"]


def _csv(kind):
    return lambda s: [kind(v) for v in s.split(",") if v]


RECIPE_ARGS = ("batch_size", "lr", "init", "distill", "distill_alpha", "distill_temperature", "teacher_epochs",
               "teacher_hidden", "teacher_lr", "label_smoothing", "weight_decay", "dropout", "input_dropout",
               "bn_recalibrate")


def run_one(method, dataset, seed, epochs, hidden, input_bits, ds, augment_shift=None, recipe=None, save_dir=None):
    """Train one (method, dataset, seed); return a flat result dict.

    ``recipe``: keyword arguments of :func:`xnorflow.sw.train.methods.train` from :data:`RECIPE_ARGS`
    (missing or ``None`` = the dataset default). ``save_dir``: also write the checkpoint to
    ``save_dir/<dataset>-<method>-s<seed>/model.pt`` (for ``xnorflow compile``).
    """
    from xnorflow.sw.train import methods
    kw = {k: v for k, v in (recipe or {}).items() if v is not None}
    model, meta, m = methods.train(method, dataset, hidden=hidden, input_bits=input_bits, epochs=epochs,
                                   seed=seed, progress="epochs", ds=ds,
                                   augment_shift=augment_shift, **kw)
    if save_dir:
        from xnorflow.sw.train.checkpoint import save_checkpoint
        save_checkpoint(os.path.join(save_dir, f"{dataset}-{method}-s{seed}", "model.pt"), model, meta)
    keep = ("method", "dataset", "seed", "test_accuracy", "train_accuracy", "train_seconds", "epochs", "input_bits",
            "hidden", "deployable", "weight_only_accuracy", "deployable_accuracy", "soft_test_accuracy",
            "hard_test_accuracy", "swap_accuracy_change", "lr", "batch_size", "augment_shift", "distill",
            "distill_alpha", "distill_temperature", "label_smoothing", "weight_decay", "teacher_test_accuracy",
            "teacher_train_seconds", "teacher_cached", "teacher_hidden", "teacher_epochs",
            "teacher_seconds_in_this_run", "init", "init_test_accuracy", "init_source_test_accuracy", "init_cached",
            "init_seconds_in_this_run", "dropout", "input_dropout", "bn_recalibrate",
            "test_accuracy_before_recalibration")
    r = {k: m[k] for k in keep if k in m}
    if method == "rbnn":
        first = m["history"][0].get("rot_flip_mean")
        r["rot_flip_first_epoch"] = first
    return r


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def train_task(method, dataset, seed, options, after=None):
    """Dask task: one (method, dataset, seed) run on a worker, with ``options`` (the
    arguments of :func:`run_one` beyond those three, plus ``threads`` and ``data_dir``).
    ``after`` (ignored) is the run this one waits for: the one training their shared
    teacher, so two workers never train the same cached teacher at once."""
    import torch
    torch.set_num_threads(options["threads"])
    from xnorflow.sw import data as datamod
    ds = datamod.load_dataset(dataset, options["data_dir"])
    return run_one(method, dataset, seed, options["epochs"], options["hidden"],
                   options["input_bits"], ds, options["augment_shift"], options["recipe"],
                   options["save_dir"])


def runs_on_cluster(spec, plan, options, runs_log=None):
    """Every ``(dataset, method, seed)`` of ``plan`` as a Dask task on the cluster ``spec``;
    the results in the order of ``plan``, each appended to ``runs_log`` as it arrives. A
    failed run does not stop the others; its error is raised once they are done."""
    token = uuid.uuid4().hex[:8]
    with open_client(spec) as client:
        futures, first = [], {}
        for dataset, method, seed in plan:
            after = first.get((dataset, seed))
            future = client.submit(train_task, method, dataset, seed, options, after,
                                   key=f"train-{dataset}-{method}-s{seed}-{token}", pure=False)
            first.setdefault((dataset, seed), future)
            futures.append(future)
        order = {f.key: i for i, f in enumerate(futures)}
        progress = TaskProgress(client, futures, desc="train_methods runs", unit="run")
        finished = completed(futures, progress, keep_going=True)
        del futures   # only completed() holds them: a result is freed once read
        runs = {}
        try:
            for future, r in finished:
                runs[order[future.key]] = r
                log(f"{r['dataset']} {r['method']} seed {r['seed']}: "
                    f"{100 * r['test_accuracy']:.2f}% in {r['train_seconds']:.0f} s")
                if runs_log:
                    with open(runs_log, "a") as f:
                        f.write(json.dumps(r) + "\n")
        finally:
            progress.close()
    return [runs[i] for i in sorted(runs)]


def recipe_label(r):
    """A short label of a run's recipe beyond epochs/shift (batch, lr, distillation, smoothing)."""
    parts = [f"b{r.get('batch_size', '?')}", f"lr{r.get('lr', '?'):g}" if "lr" in r else "lr?"]
    if r.get("init"):
        parts.append(f"init-{os.path.basename(str(r['init']))}")
    if r.get("distill"):
        parts.append(f"kd-{r['distill']}(a{r.get('distill_alpha'):g},T{r.get('distill_temperature'):g})")
    if r.get("label_smoothing"):
        parts.append(f"ls{r['label_smoothing']:g}")
    if r.get("weight_decay"):
        parts.append(f"wd{r['weight_decay']:g}")
    if r.get("dropout"):
        parts.append(f"drop{r['dropout']:g}")
    if r.get("input_dropout"):
        parts.append(f"indrop{r['input_dropout']:g}")
    if r.get("bn_recalibrate"):
        parts.append("bnrecal")
    return " ".join(parts)


def summarise(runs):
    """Group runs by (dataset, method): mean/std accuracy (in %) and mean seconds."""
    groups = {}
    for r in runs:
        key = (r["dataset"], r["method"], r["epochs"], r.get("augment_shift", 0), recipe_label(r))
        groups.setdefault(key, []).append(r)
    table = []
    for (dataset, method, _, _, label), rs in sorted(groups.items()):
        accs = [100 * r["test_accuracy"] for r in rs]
        secs = [r["train_seconds"] for r in rs]
        row = {"dataset": dataset, "method": method, "seeds": [r["seed"] for r in rs],
               "accuracy_mean": statistics.mean(accs), "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
               "accuracies": accs, "seconds_mean": statistics.mean(secs), "seconds_max": max(secs),
               "epochs": rs[0]["epochs"], "augment_shift": rs[0].get("augment_shift", 0), "input_bits": rs[0]["input_bits"], "hidden": rs[0]["hidden"],
               "deployable": all(r["deployable"] for r in rs), "recipe": label}
        for extra in ("weight_only_accuracy", "swap_accuracy_change"):
            if extra in rs[0]:
                row[extra + "_mean"] = statistics.mean(100 * r[extra] for r in rs)
        table.append(row)
    return table


def plot(table, path):
    """Bar chart of mean accuracy ± std per method, one panel per dataset."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datasets = sorted({r["dataset"] for r in table})
    width = max(5, max(sum(r["dataset"] == d for r in table) for d in datasets) * 1.1)
    fig, axes = plt.subplots(1, len(datasets), figsize=(width * len(datasets), 4), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        rows = [r for r in table if r["dataset"] == d]
        # The recipe tokens every bar shares go into the title; each bar names only its own.
        tokens = [[f"{r['epochs']}ep"] + ([f"shift{r['augment_shift']}"] if r["augment_shift"] else [])
                  + (r.get("recipe") or "").split() for r in rows]
        common = [t for t in tokens[0] if all(t in ts for ts in tokens)]
        labels = [r["method"] + "".join("\n" + t for t in ts if t not in common) for r, ts in zip(rows, tokens)]
        ax.bar(labels, [r["accuracy_mean"] for r in rows],
               yerr=[r["accuracy_std"] for r in rows], capsize=4, color="tab:blue")
        lo = min(r["accuracy_mean"] for r in rows)
        ax.set_ylim(max(0, lo - 5), 100)
        ax.set_title(f"{d} (k={rows[0]['input_bits']} input bits)\n{' '.join(common)}", fontsize=9)
        ax.set_ylabel("test accuracy (%)")
        for i, r in enumerate(rows):
            ax.text(i, r["accuracy_mean"] + r["accuracy_std"] + 0.15, f"{r['accuracy_mean']:.1f}", ha="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def runs_here(args, hidden, recipe):
    """Every (dataset, method, seed) of ``args`` trained one after the other in this process,
    each appended to ``--runs-log`` as it ends."""
    from xnorflow.sw import data as datamod
    runs = []
    for dataset in args.datasets:
        ds = datamod.load_dataset(dataset, args.data_dir)
        for method in args.methods:
            for seed in args.seeds:
                t0 = time.time()
                print(f"[bench] {dataset} {method} seed {seed} ...", file=sys.stderr, flush=True)
                r = run_one(method, dataset, seed, args.epochs, hidden, args.input_bits, ds, args.augment_shift, recipe,
                            args.save_dir)
                print(f"[bench] {dataset} {method} seed {seed}: {100 * r['test_accuracy']:.2f}% "
                      f"in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
                runs.append(r)
                if args.runs_log:
                    with open(args.runs_log, "a") as f:
                        f.write(json.dumps(r) + "\n")
    return runs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", type=_csv(str), default=["digits", "fashion-mnist"])
    p.add_argument("--methods", type=_csv(str), default=ALL_METHODS)
    p.add_argument("--seeds", type=_csv(int), default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="override the per-dataset default epochs")
    p.add_argument("--hidden", default=None, help="override hidden widths, e.g. 256,256")
    p.add_argument("--input-bits", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--augment-shift", type=int, default=None, help="random shifts up to N pixels (IDX datasets)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--init", default=None, help="'fp', 'binact', 'none' or a checkpoint to initialise from (default: dataset default)")
    p.add_argument("--distill", default=None, help="'fp', 'binact', 'none' or a teacher checkpoint (default: dataset default)")
    p.add_argument("--distill-alpha", type=float, default=None)
    p.add_argument("--distill-temperature", type=float, default=None)
    p.add_argument("--teacher-epochs", type=int, default=None)
    p.add_argument("--teacher-lr", type=float, default=None)
    p.add_argument("--teacher-hidden", default=None, help="hidden widths of an 'fp' teacher, e.g. 1024,1024")
    p.add_argument("--label-smoothing", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--dropout", type=float, default=None, help="training-only dropout on the binary activations")
    p.add_argument("--input-dropout", type=float, default=None, help="training-only dropout on the input pixels")
    p.add_argument("--bn-recalibrate", action=argparse.BooleanOptionalAction, default=None,
                   help="recompute BN running statistics over the training set after training")
    p.add_argument("--save-dir", default=None, help="also save each run's model.pt under this directory")
    p.add_argument("--threads", type=int, default=1)
    add_cluster_argument(p, "each method x seed training is one task; --threads is each "
                            "task's torch threads")
    p.add_argument("--png", default="benchmarks/train_methods.png")
    p.add_argument("--runs-log", default=None, help="append each finished run as a JSON line here")
    p.add_argument("--from-log", default=None, help="do not train; summarise the runs in this JSONL file")
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)

    runs = []
    if args.from_log:
        with open(args.from_log) as f:
            runs = [json.loads(line) for line in f if line.strip()]
    else:
        hidden = [int(h) for h in args.hidden.split(",")] if args.hidden else None
        recipe = {k: getattr(args, k) for k in RECIPE_ARGS}
        if recipe["teacher_hidden"]:
            recipe["teacher_hidden"] = [int(h) for h in recipe["teacher_hidden"].split(",")]
        if recipe["distill"] is None:
            recipe["distill"] = "default"
        if recipe["init"] is None:
            recipe["init"] = "default"
        if args.cluster is not None:
            plan = [(d, m, s) for d in args.datasets for m in args.methods for s in args.seeds]
            options = {"epochs": args.epochs, "hidden": hidden, "input_bits": args.input_bits,
                       "augment_shift": args.augment_shift, "recipe": recipe,
                       "save_dir": args.save_dir, "threads": args.threads,
                       "data_dir": args.data_dir}
            try:
                runs = runs_on_cluster(args.cluster, plan, options, args.runs_log)
            except XnorflowError as e:   # no Dask, no scheduler, a run that failed
                raise SystemExit(f"train_methods: {e}") from None
        else:
            runs = runs_here(args, hidden, recipe)
    table = summarise(runs)
    if args.png and table:
        os.makedirs(os.path.dirname(os.path.abspath(args.png)), exist_ok=True)
        plot(table, args.png)
    doc = {"benchmark": "train_methods", "torch_threads": args.threads, "command": " ".join(sys.argv),
           "table": table, "runs": runs}
    json.dump(doc, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
