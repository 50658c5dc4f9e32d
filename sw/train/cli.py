"""``xnorflow train``: train one method on one dataset and write model.pt, metrics.json, training.png."""
import argparse
import json
import os
import sys

from .. import data as datamod

METHOD_CHOICES = ("irnet", "rbnn", "sbn", "bwnh", "ste", "fp")


def parse_hidden(text):
    """``"256,256"`` → ``[256, 256]``; ``""`` or ``"none"`` → ``[]`` (argparse type: errors name --hidden)."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        widths = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 256,256, got {text!r}")
    if any(w <= 0 for w in widths):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text!r}")
    return widths


def _bounded(kind, accept, expected):
    """An argparse type: ``kind(text)``, refused unless ``accept(value)``; errors say ``expected``."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        if not accept(v):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text}")
        return v
    return parse


def _positive(kind):
    return _bounded(kind, lambda v: v > 0, f"a positive {kind.__name__}")


_input_bits = _bounded(int, lambda k: 1 <= k <= 8, "an integer in 1..8")
_fraction = _bounded(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
_probability = _bounded(float, lambda v: 0.0 <= v < 1.0, "a probability in [0, 1)")
_nonnegative = _bounded(float, lambda v: v >= 0, "a non-negative number")


def _arch(text):
    """``--arch``: ``mlp``, ``cnv`` or ``cnv:16,16,p,32,32,p`` → None or a conv stack (sw/train/conv.py)."""
    from .conv import parse_arch
    try:
        return parse_arch(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def add_parser(subparsers):
    """Register the ``train`` subcommand on an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "train", help="train a binary MLP or CNN (IR-Net, RBNN, Self-Binarizing, BWNH, STE or float baseline)",
        description=__doc__ + " Defaults per dataset: digits hidden 256,256, 4 input bits, 60 epochs; "
        "fashion-mnist/mnist hidden 256,256,256 (SFC), 8 input bits.")
    p.add_argument("--method", required=True, choices=METHOD_CHOICES)
    p.add_argument("--dataset", required=True, choices=datamod.DATASETS)
    p.add_argument("--data-dir", default=None, help="directory with the IDX files (fashion-mnist, mnist)")
    p.add_argument("--hidden", type=parse_hidden, default=None, help="hidden widths, e.g. 256,256")
    p.add_argument("--input-bits", type=_input_bits, default=None, help="k: first-layer input bits (1..8)")
    p.add_argument("--arch", type=_arch, default=None, metavar="ARCH",
                   help="mlp (default); cnv: 3x3 conv64,conv64,pool,conv128,conv128,pool then --hidden "
                   "(default 256) dense layers; or cnv:16,16,p,32,32,p (conv channels, p = 2x2 max-pool)")
    p.add_argument("--epochs", type=_positive(int), default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=_positive(int), default=None)
    p.add_argument("--lr", type=_positive(float), default=None)
    p.add_argument("--augment-shift", type=int, default=None, metavar="N",
                   help="train on random image shifts of up to N pixels (square images; default: dataset default)")
    p.add_argument("--augment-flip", action="store_true",
                   help="train on left-right mirrored images too (half of each batch; square single-channel images)")
    p.add_argument("--init", default="default", metavar="SOURCE",
                   help="initial latent weights and BN gamma/beta: 'fp' (the cached full-precision network of the "
                   "student's shape, trained like an 'fp' teacher), 'binact' (the same with binary activations: "
                   "two-stage binarisation), a checkpoint path of the same shape, or 'none' "
                   "(random); default: dataset default")
    p.add_argument("--distill", default="default", metavar="TEACHER",
                   help="knowledge distillation: 'fp' (train/cache a full-precision teacher of the same shape), "
                   "'binact' (the same with binary activations), a teacher checkpoint path (model.pt), or 'none' "
                   "(plain cross-entropy); default: dataset default")
    p.add_argument("--distill-alpha", type=_fraction, default=None,
                   help="weight a of the KL term: (1-a)*CE + a*T^2*KL (default 0.9)")
    p.add_argument("--distill-temperature", type=_positive(float), default=None, metavar="T",
                   help="softmax temperature of the KL term (default 4)")
    p.add_argument("--teacher-epochs", type=_positive(int), default=None, help="epochs of an 'fp' teacher (default 30)")
    p.add_argument("--teacher-lr", type=_positive(float), default=None, help="learning rate of an 'fp' teacher (default 2e-3)")
    p.add_argument("--teacher-hidden", type=parse_hidden, default=None,
                   help="hidden widths of an 'fp' teacher (default: the student's)")
    p.add_argument("--teacher-cache", default=None, metavar="DIR",
                   help="cache directory for 'fp' teachers (default $XNORFLOW_CACHE/teachers or ~/.cache/xnorflow/teachers)")
    p.add_argument("--label-smoothing", type=_fraction, default=None, help="label smoothing of the CE term (default 0)")
    p.add_argument("--weight-decay", type=_nonnegative, default=None, help="Adam L2 weight decay (default 0)")
    p.add_argument("--dropout", type=_probability, default=None, metavar="P",
                   help="training-only dropout on the binary activations between layers (eval and the "
                   "deployed model unchanged; default: dataset default)")
    p.add_argument("--input-dropout", type=_probability, default=None, metavar="P",
                   help="training-only dropout on the input pixels (default: dataset default)")
    p.add_argument("--bn-recalibrate", action=argparse.BooleanOptionalAction, default=None,
                   help="after training, recompute every batch norm's running statistics over the whole "
                   "training set with the final binary weights (default: dataset default)")
    p.add_argument("--threads", type=_positive(int), default=1,
                   help="torch CPU threads (default 1: on a busy 2-core machine more threads were slower)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUT/train_state.pt (written after every epoch and "
                        "every --state-every minutes, removed when the run ends) with the same settings; "
                        "without the file it starts afresh")
    p.add_argument("--state-every", type=_positive(float), default=10.0, metavar="MINUTES",
                   help="also write the training state this often within an epoch (default 10), so an "
                        "interrupted run loses at most that much work")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run)
    return p


def _fail(option, message):
    print(f"xnorflow train: error: {option}: {message}", file=sys.stderr)
    return 2


def run(args):
    """Execute ``xnorflow train`` for parsed ``args``; returns the exit code."""
    import torch

    from . import methods
    from .checkpoint import save_checkpoint
    from .plots import plot_history
    from .resume import ResumeError

    torch.set_num_threads(args.threads)
    try:
        ds = datamod.load_dataset(args.dataset, args.data_dir)
    except datamod.DatasetError as e:
        return _fail("--data-dir" if args.dataset != "digits" else "--dataset", str(e))
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        return _fail("--out", f"cannot create {args.out}: {e}")
    overrides = None
    if args.arch is not None:
        from .conv import CNV_HIDDEN, cnn_overrides
        image = ds.image_shape or (int(round(ds.in_features ** 0.5)),) * 2 + (1,)
        try:
            overrides = cnn_overrides(args.method, args.arch, image)
        except ValueError as e:
            return _fail("--arch", f"{e} ({args.dataset} images are {image[0]}x{image[1]}x{image[2]})")
        if args.hidden is None:
            args.hidden = list(CNV_HIDDEN)
    if args.init not in ("default", "fp", "binact", "none", "") and not os.path.isfile(args.init):
        return _fail("--init", f"expected 'fp', 'binact', 'none' or a checkpoint file; {args.init} does not exist")
    if args.distill not in ("default", "fp", "binact", "none", "") and not os.path.isfile(args.distill):
        return _fail("--distill", f"expected 'fp', 'binact', 'none' or a teacher checkpoint file; {args.distill} does not exist")
    state_path = os.path.join(args.out, "train_state.pt")
    plot_path = os.path.join(args.out, "training.png")

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
        return _fail("--resume", str(e))
    except methods.InitError as e:
        return _fail("--init", str(e))
    except methods.TeacherError as e:
        return _fail("--distill", str(e))
    save_checkpoint(os.path.join(args.out, "model.pt"), model, meta)
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1, default=float)
    plot_history(metrics["history"], plot_path,
                 f"{args.method} on {args.dataset}: test {100 * metrics['test_accuracy']:.2f}%")
    if os.path.exists(state_path):  # the run is complete: model.pt supersedes it
        os.remove(state_path)
    if not args.quiet:
        print(f"{args.method} {args.dataset}: test accuracy {100 * metrics['test_accuracy']:.2f}% "
              f"({metrics['train_seconds']:.1f} s); wrote {args.out}/model.pt, metrics.json, training.png",
              file=sys.stderr)
    return 0
