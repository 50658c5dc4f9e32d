"""``xnorflow train``: train one method on one dataset and write model.pt, metrics.json, training.png."""
import argparse
import json
import os
import sys

from .. import data as datamod
from ..argtypes import (bounded, check_writable_file, fraction, int_range, nonnegative_float,
                        nonnegative_int, output_dir, positive_float, positive_int, probability)
from ..errors import XnorflowError
from .defaults import DATASET_DEFAULTS, MAX_LAYER_WIDTH, METHOD_DATASET_DEFAULTS, RECIPE_OPTIONS

METHOD_CHOICES = ("irnet", "rbnn", "sbn", "bwnh", "ste", "fp")
STATE_FILE, MODEL_FILE, METRICS_FILE, PLOT_FILE = "train_state.pt", "model.pt", "metrics.json", "training.png"

# Argument types beyond sw/argtypes.py's. A batch holds at least two examples: batch norm needs
# two samples, and the loop drops a one-example batch, so --batch-size 1 trained nothing.
_batch_size = bounded(int, lambda v: v >= 2, "an integer ≥ 2 (batch norm needs two examples per batch)")
_seed = int_range(0, 2 ** 32 - 1)
# torch starts this many threads at its first operation: --threads 100000 crashed the process
# (segmentation fault), so a typo is refused instead.
_threads = int_range(1, 256)


class OptionError(XnorflowError):
    """A ``train`` option whose value cannot work with the data or the files it meets
    (the CLI prints ``xnorflow train: error: --option: message`` and exits 2)."""

    def __init__(self, option, message):
        super().__init__(f"{option}: {message}")


def parse_hidden(text):
    """``"256,256"`` → ``[256, 256]``; ``""`` or ``"none"`` → ``[]`` (argparse type: errors name --hidden)."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        widths = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 256,256, got {text!r}")
    if any(not 1 <= w <= MAX_LAYER_WIDTH for w in widths):
        raise argparse.ArgumentTypeError(f"layer widths must be in 1..{MAX_LAYER_WIDTH}, got {text!r}")
    return widths


def _arch(text):
    """``--arch``: ``mlp``, ``cnv`` or ``cnv:16,16,p,32,32,p`` → None or a conv stack (sw/train/conv.py)."""
    from .conv import parse_arch
    try:
        return parse_arch(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def _as_text(value):
    """A default as the command line spells it: ``0.003``, ``256,256``, ``4``."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _on_off(value):
    return "on" if value else "off"


def _source(value):
    return value or "none"


def per_dataset_default(key, fallback=None, show=_as_text):
    """The default of recipe field ``key`` on every dataset, with method-specific departures:
    ``"digits 0.003 (rbnn 0.01), fashion-mnist 0.006, …"``. Read from sw/train/defaults.py (a
    dataset without the field uses the recipe-wide value, else ``fallback``), so the help can
    never disagree with what training uses."""
    parts, values = [], set()
    for dataset, defaults in DATASET_DEFAULTS.items():
        value = show(defaults.get(key, RECIPE_OPTIONS.get(key, fallback)))
        departures = [f"{method} {show(o[key])}" for (method, ds), o in METHOD_DATASET_DEFAULTS.items()
                      if ds == dataset and key in o]
        values.add(value if not departures else None)
        parts.append(f"{dataset} {value}" + (f" ({', '.join(departures)})" if departures else ""))
    if len(values) == 1 and None not in values:
        return values.pop()  # the same everywhere: "0", not "digits 0, fashion-mnist 0, …"
    return ", ".join(parts)


def add_parser(subparsers):
    """Register the ``train`` subcommand on an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "train", help="train a binary MLP or CNN (IR-Net, RBNN, Self-Binarizing, BWNH, STE or float baseline)",
        description=__doc__ + " Every default not given below depends on the dataset (and a few on the "
        "method); they are listed per option.")
    p.add_argument("--method", required=True, choices=METHOD_CHOICES,
                   help="training method: irnet (IR-Net), rbnn (Rotated BNN), sbn (Self-Binarizing), bwnh "
                        "(binary weight hashing), ste (straight-through estimator) or fp (float baseline, "
                        "not deployable); required")
    p.add_argument("--dataset", required=True, choices=datamod.DATASETS,
                   help="data set: digits (8x8, ships with scikit-learn), fashion-mnist and mnist (IDX files "
                        "in --data-dir), cifar10 (the python batches in --data-dir); required")
    p.add_argument("--data-dir", default=None,
                   help="directory with the IDX files (fashion-mnist, mnist) or CIFAR-10 batches (default "
                        + ", ".join(f"{k}: {v}" for k, v in datamod.DEFAULT_DIRS.items()) + "; none for cifar10)")
    p.add_argument("--hidden", type=parse_hidden, default=None,
                   help=f"hidden layer widths, comma-separated, each 1..{MAX_LAYER_WIDTH}, or none (default "
                        f"{per_dataset_default('hidden')}; with --arch cnv 256)")
    p.add_argument("--input-bits", type=int_range(1, 8), default=None,
                   help=f"k: first-layer input bits, 1..8 (default {per_dataset_default('input_bits')})")
    p.add_argument("--arch", type=_arch, default=None, metavar="ARCH",
                   help="mlp (default); cnv: 3x3 conv64,conv64,pool,conv128,conv128,pool then --hidden "
                   "(default 256) dense layers; or cnv:16,16,p,32,32,p (conv channels, p = 2x2 max-pool)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help=f"training epochs (default {per_dataset_default('epochs')})")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the initial weights, the batch order and the augmentation, "
                        "0..4294967295 (default 0)")
    p.add_argument("--batch-size", type=_batch_size, default=None,
                   help=f"examples per training step, at least 2 (default {per_dataset_default('batch_size')})")
    p.add_argument("--lr", type=positive_float, default=None,
                   help=f"Adam's initial learning rate, decayed to 0 by a cosine over the run (default "
                        f"{per_dataset_default('lr')})")
    p.add_argument("--augment-shift", type=nonnegative_int, default=None, metavar="N",
                   help="train on random image shifts of up to N pixels, less than the image side (square "
                        f"single-channel images; default {per_dataset_default('augment_shift', 0)})")
    p.add_argument("--augment-flip", action="store_true",
                   help="train on left-right mirrored images too (half of each batch; square single-channel "
                        "images; default off)")
    p.add_argument("--init", default="default", metavar="SOURCE",
                   help="initial latent weights and BN gamma/beta: 'fp' (the cached full-precision network of the "
                   "student's shape, trained like an 'fp' teacher), 'binact' (the same with binary activations: "
                   "two-stage binarisation), a checkpoint path of the same shape, or 'none' "
                   f"(random); default {per_dataset_default('init', show=_source)}")
    p.add_argument("--distill", default="default", metavar="TEACHER",
                   help="knowledge distillation: 'fp' (train/cache a full-precision teacher of the same shape), "
                   "'binact' (the same with binary activations), a teacher checkpoint path (model.pt), or 'none' "
                   f"(plain cross-entropy); default {per_dataset_default('distill', show=_source)}")
    p.add_argument("--distill-alpha", type=fraction, default=None,
                   help="weight a of the KL term, in [0, 1]: (1-a)*CE + a*T^2*KL "
                        f"(default {RECIPE_OPTIONS['distill_alpha']:g})")
    p.add_argument("--distill-temperature", type=positive_float, default=None, metavar="T",
                   help=f"softmax temperature of the KL term (default {RECIPE_OPTIONS['distill_temperature']:g})")
    p.add_argument("--teacher-epochs", type=positive_int, default=None,
                   help=f"epochs of an 'fp'/'binact' teacher (default {RECIPE_OPTIONS['teacher_epochs']})")
    p.add_argument("--teacher-lr", type=positive_float, default=None,
                   help=f"learning rate of an 'fp'/'binact' teacher (default {RECIPE_OPTIONS['teacher_lr']:g})")
    p.add_argument("--teacher-hidden", type=parse_hidden, default=None,
                   help="hidden widths of an 'fp' teacher (default: the student's)")
    p.add_argument("--teacher-cache", type=output_dir, default=None, metavar="DIR",
                   help="cache directory for 'fp' teachers (default $XNORFLOW_CACHE/teachers or "
                        "~/.cache/xnorflow/teachers)")
    p.add_argument("--label-smoothing", type=fraction, default=None,
                   help=f"label smoothing of the CE term, in [0, 1] (default {RECIPE_OPTIONS['label_smoothing']:g})")
    p.add_argument("--weight-decay", type=nonnegative_float, default=None,
                   help=f"Adam L2 weight decay (default {RECIPE_OPTIONS['weight_decay']:g})")
    p.add_argument("--dropout", type=probability, default=None, metavar="P",
                   help="training-only dropout on the binary activations between layers, in [0, 1) (eval and "
                   f"the deployed model unchanged; default {per_dataset_default('dropout')})")
    p.add_argument("--input-dropout", type=probability, default=None, metavar="P",
                   help="training-only dropout on the input pixels, in [0, 1) "
                        f"(default {per_dataset_default('input_dropout')})")
    p.add_argument("--bn-recalibrate", action=argparse.BooleanOptionalAction, default=None,
                   help="after training, recompute every batch norm's running statistics over the whole "
                   "training set with the final binary weights "
                   f"(default {per_dataset_default('bn_recalibrate', show=_on_off)})")
    p.add_argument("--threads", type=_threads, default=1,
                   help="torch CPU threads, 1..256 (default 1: on a busy 2-core machine more threads were slower)")
    p.add_argument("--quiet", action="store_true", help="no progress output (default: progress on stderr)")
    fresh = p.add_mutually_exclusive_group()
    fresh.add_argument("--resume", action="store_true",
                       help=f"continue an interrupted run from OUT/{STATE_FILE} (written after every epoch and "
                            "every --state-every minutes, removed when the run ends) with the same settings; "
                            "without the file it starts afresh (default off)")
    fresh.add_argument("--overwrite", action="store_true",
                       help=f"start afresh even though OUT/{STATE_FILE} holds an interrupted run, discarding "
                            f"that state (default off: such a state is refused unless --resume or --overwrite)")
    p.add_argument("--state-every", type=positive_float, default=10.0, metavar="MINUTES",
                   help="also write the training state this often within an epoch (default 10), so an "
                        "interrupted run loses at most that much work")
    p.add_argument("--out", required=True, type=output_dir, metavar="DIR",
                   help=f"output directory, created if missing: {MODEL_FILE}, {METRICS_FILE}, {PLOT_FILE} "
                        f"(and {STATE_FILE} while training); a finished model already there is replaced "
                        "only when the new run ends; required")
    p.set_defaults(func=run)
    return p


def check_outputs(args):
    """Before any work: every file the run writes in ``args.out`` can be written, and an
    interrupted run's saved state is neither resumed by accident nor silently discarded."""
    if not os.path.isdir(args.out):
        return  # created later; output_dir checked that its nearest existing parent is writable
    for name in (STATE_FILE, MODEL_FILE, METRICS_FILE, PLOT_FILE):
        try:
            check_writable_file(os.path.join(args.out, name))
        except argparse.ArgumentTypeError as e:
            raise OptionError("--out", str(e)) from None
    state_path = os.path.join(args.out, STATE_FILE)
    if os.path.isfile(state_path) and not (args.resume or args.overwrite):
        raise OptionError("--out", f"{state_path} holds the saved state of an interrupted run: continue it with "
                                   "--resume, or discard it and start afresh with --overwrite")


def image_of(ds):
    """``(H, W, C)`` of the dataset's images (a square single-channel guess when unknown)."""
    return ds.image_shape or (int(round(ds.in_features ** 0.5)),) * 2 + (1,)


def check_augmentation(args, ds):
    """--augment-shift/--augment-flip need square single-channel images; a shift must stay
    below the image side (a larger one only ever shows black images, and costs (2N+1)² masks)."""
    if not (args.augment_shift or args.augment_flip):
        return
    option = "--augment-shift" if args.augment_shift else "--augment-flip"
    h, w, c = image_of(ds)
    if h != w or c != 1 or h * w != ds.in_features:
        raise OptionError(option, f"needs square single-channel images; {args.dataset} images are {h}x{w}x{c}")
    if args.augment_shift and args.augment_shift >= h:
        raise OptionError("--augment-shift", f"must be less than the image side, {h} pixels for "
                                             f"{args.dataset}, got {args.augment_shift}")


def conv_overrides(args, ds):
    """``method_overrides`` for ``--arch`` (None for the MLP); sets the CNN's default --hidden."""
    if args.arch is None:
        return None
    from .conv import CNV_HIDDEN, cnn_overrides
    image = image_of(ds)
    try:
        overrides = cnn_overrides(args.method, args.arch, image)
    except ValueError as e:
        raise OptionError("--arch", f"{e} ({args.dataset} images are {image[0]}x{image[1]}x{image[2]})") from None
    if args.hidden is None:
        args.hidden = list(CNV_HIDDEN)
    return overrides


def check_sources(args):
    """--init and --distill name a known source or an existing checkpoint file."""
    for option, value, what in (("--init", args.init, "a checkpoint file"),
                                ("--distill", args.distill, "a teacher checkpoint file")):
        if value not in ("default", "fp", "binact", "none", "") and not os.path.isfile(value):
            raise OptionError(option, f"expected 'fp', 'binact', 'none' or {what}; {value} does not exist")


def physical_memory():
    """Bytes of RAM in this machine (None when the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(args, ds, overrides):
    """Refuse a network whose training state cannot fit in this machine's memory, before a
    single tensor is allocated (two 65536-wide layers would need ~64 GiB): the model is
    built on torch's ``meta`` device, which records shapes only."""
    import torch

    from .methods import METHOD_CONFIGS, resolve_defaults
    from .models import build_model
    defaults = resolve_defaults(args.method, args.dataset)
    hidden = defaults["hidden"] if args.hidden is None else args.hidden
    bits = defaults["input_bits"] if args.input_bits is None else args.input_bits
    cfg = {**METHOD_CONFIGS[args.method], **(overrides or {})}
    with torch.device("meta"):
        model = build_model(ds.in_features, hidden, ds.num_classes, bits, cfg)
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    need = 4 * (4 * params + buffers)  # float32 weights, gradients and Adam's two moments
    have = physical_memory()
    if have is not None and need > have:
        option = "--arch" if args.arch is not None else "--hidden"
        raise OptionError(option, f"the network has {params:,} parameters; training it needs about "
                                  f"{need / 2 ** 30:.1f} GiB but this machine has {have / 2 ** 30:.1f} GiB "
                                  f"(choose smaller layers)")


def run(args):
    """Execute ``xnorflow train`` for parsed ``args``; returns the exit code.

    Everything that can be checked is checked before training starts (options, output files,
    data, memory), so a mistake costs seconds; an output directory this run created is removed
    again when the run fails before writing anything into it."""
    import torch

    check_outputs(args)
    check_sources(args)
    torch.set_num_threads(args.threads)
    try:
        ds = datamod.load_dataset(args.dataset, args.data_dir)
    except datamod.DatasetError as e:
        raise OptionError("--data-dir" if args.dataset != "digits" else "--dataset", str(e)) from None
    check_augmentation(args, ds)
    overrides = conv_overrides(args, ds)
    check_memory(args, ds, overrides)
    created = not os.path.isdir(args.out)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise OptionError("--out", f"cannot create {args.out}: {e}") from None
    try:
        return train_into(args, ds, overrides)
    except BaseException:
        if created and not os.listdir(args.out):
            os.rmdir(args.out)  # e.g. an unreadable --init checkpoint: leave no empty directory behind
        raise


def train_into(args, ds, overrides):
    """Train and write ``args.out``'s files; training errors become :class:`OptionError`."""
    from . import methods
    from .checkpoint import save_checkpoint
    from .plots import plot_history
    from .resume import ResumeError
    from ..xnf import atomic_write
    from .trainer import DivergedError

    state_path = os.path.join(args.out, STATE_FILE)
    plot_path = os.path.join(args.out, PLOT_FILE)
    if args.overwrite and os.path.exists(state_path):
        os.remove(state_path)  # asked for: the interrupted run is discarded, this one starts afresh

    def redraw(history):
        """training.png after every epoch, so a long run's curves can be watched."""
        last = history[-1]
        plot_history(history, plot_path, f"{args.method} on {args.dataset}: {last['stage']} epoch {last['epoch'] + 1}, "
                     f"test {100 * last['test_acc']:.2f}% (training)")

    if args.resume and not args.quiet:
        found = os.path.isfile(state_path)
        print(f"xnorflow train: {'resuming from' if found else 'no saved state at'} {state_path}"
              f"{'' if found else '; starting at epoch 1'}", file=sys.stderr)
    try:
        model, meta, metrics = methods.train(
            args.method, args.dataset, hidden=args.hidden, input_bits=args.input_bits, epochs=args.epochs,
            seed=args.seed, batch_size=args.batch_size, lr=args.lr, progress=not args.quiet, ds=ds,
            augment_shift=args.augment_shift, augment_flip=args.augment_flip, distill=args.distill, distill_alpha=args.distill_alpha,
            distill_temperature=args.distill_temperature, teacher_epochs=args.teacher_epochs,
            teacher_hidden=args.teacher_hidden, teacher_lr=args.teacher_lr, teacher_cache=args.teacher_cache,
            label_smoothing=args.label_smoothing, weight_decay=args.weight_decay, method_overrides=overrides,
            init=args.init, dropout=args.dropout, input_dropout=args.input_dropout, bn_recalibrate=args.bn_recalibrate,
            state_path=state_path, resume=args.resume, on_epoch=redraw, state_every=60.0 * args.state_every)
    except KeyboardInterrupt:
        if os.path.exists(state_path):
            print(f"xnorflow train: interrupted; {state_path} holds the last saved point (an epoch's end, "
                  f"or within the last {args.state_every:g} minutes): run the same command with --resume "
                  f"to continue from it", file=sys.stderr)
            return 130
        raise
    except ResumeError as e:
        raise OptionError("--resume", str(e)) from None
    except methods.InitError as e:
        raise OptionError("--init", str(e)) from None
    except methods.TeacherError as e:
        raise OptionError("--distill", str(e)) from None
    except DivergedError as e:
        raise OptionError("--lr", str(e)) from None
    save_checkpoint(os.path.join(args.out, MODEL_FILE), model, meta)
    atomic_write(os.path.join(args.out, METRICS_FILE), json.dumps(metrics, indent=1, default=float).encode())
    plot_history(metrics["history"], plot_path,
                 f"{args.method} on {args.dataset}: test {100 * metrics['test_accuracy']:.2f}%")
    if os.path.exists(state_path):  # the run is complete: model.pt supersedes it
        os.remove(state_path)
    if not args.quiet:
        print(f"{args.method} {args.dataset}: test accuracy {100 * metrics['test_accuracy']:.2f}% "
              f"({metrics['train_seconds']:.1f} s); wrote {args.out}/{MODEL_FILE}, {METRICS_FILE}, {PLOT_FILE}",
              file=sys.stderr)
    return 0
