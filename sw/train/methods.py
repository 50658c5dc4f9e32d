"""Training recipes: one function per method, all producing a :class:`BinaryMLP` + metrics.

``train(method, dataset, ...)`` is the entry point used by the CLI and the benchmark. Each
recipe only assembles a model configuration, the callbacks (schedules) and stages; the loop
itself is :func:`xnorflow.sw.train.trainer.fit`.
"""
import copy
import hashlib
import json
import os
import time

import numpy as np
import torch

from .. import data as datamod
from . import bwnh as bwnhmod
from . import estimators as est
from . import schedules
# The defaults live in a torch-free module (the CLI's --help quotes them); names kept here.
from .defaults import DATASET_DEFAULTS, METHOD_DATASET_DEFAULTS, RECIPE_OPTIONS, resolve_defaults  # noqa: F401
from .losses import CrossEntropy, Distillation
from .models import build_model
from .resume import ResumeError, load_fit_state
from .trainer import chain, evaluate, fit, random_flip, random_shift, recalibrate_bn

METHODS = ("irnet", "rbnn", "sbn", "bwnh", "ste", "fp")

# Per-method configuration; stored in the checkpoint as ``method_config``.
METHOD_CONFIGS = {
    "irnet": {"weight": "irnet", "act": "ede", "t_min": 0.1, "t_max": 10.0},
    "rbnn": {"weight": "rbnn", "act": "rbnn", "t_min": 1e-2, "t_max": 1e1, "theta_init": "uniform",
             "rotation_iterations": 3, "act_centring": False, "init_rotation": "identity"},
    "sbn": {"weight": "sbn", "act": "tanh", "nu_start": 1.0, "nu_end": 1000.0},
    "ste": {"weight": "ste", "act": "ste", "weight_clip": 1.0},
    # BWNH: float pre-training (hardtanh activations), hashing, weight-only fine-tuning, then
    # fine-tuning with binary (STE) activations; fractions are of --epochs.
    "bwnh": {"weight": "bwnh", "act": "ste", "weight_clip": None, "pretrain_act": "hardtanh",
             "pretrain_fraction": 0.4, "weight_only_fraction": 0.2, "hash_iterations": 5,
             "hash_samples": 10000},
    "fp": {"weight": "float", "act": "relu"},
}

def tensors(ds, input_bits):
    """Quantise a :class:`xnorflow.sw.data.Dataset` into float tensors of k-bit integers + label tensors."""
    def t(x):
        return torch.from_numpy(datamod.quantize_inputs(x, input_bits, ds.max_value).astype(np.float32))
    return (t(ds.x_train), torch.from_numpy(ds.y_train)), (t(ds.x_test), torch.from_numpy(ds.y_test))


def _callbacks(method, cfg, model, train_x):
    if method == "irnet":
        return [schedules.TKSchedule(cfg["t_min"], cfg["t_max"], act_rule="same")]
    if method == "rbnn":
        return [schedules.RotationUpdate(cfg["rotation_iterations"]),
                schedules.TKSchedule(cfg["t_min"], cfg["t_max"], act_rule="rbnn")]
    if method == "sbn":
        probe = train_x[:1000]
        return [schedules.NuSchedule(cfg["nu_start"], cfg["nu_end"]), schedules.SaturationProbe(probe)]
    return []


def _set_hard(model, hard):
    for e in schedules.weight_estimators(model) + schedules.act_estimators(model):
        if isinstance(e, est.SoftSign):
            e.hard = hard


def _stage_epochs(total, fractions):
    """Split ``total`` epochs into stages by fractions (each ≥1, the last gets the remainder)."""
    parts = [max(1, int(round(total * f))) for f in fractions]
    last = max(1, total - sum(parts))
    return parts + [last]


class TeacherError(ValueError):
    """The distillation teacher cannot be used (unreadable, or it takes different inputs)."""


class InitError(ValueError):
    """The ``--init`` source cannot initialise the student (unreadable, other inputs or shape)."""


@torch.no_grad()
def init_from(model, source, rotation="identity"):
    """Initialise ``model`` from a trained network ``source`` with the same layer shapes.

    Copies every layer's latent weight (``layers[i].weight``) and every batch norm's affine
    parameters (``gamma``, ``beta``); the quantizers then re-derive what depends on the weights
    (RBNN: ``λ_c = mean|w_c|`` and the rotations, see :meth:`RBNNWeight.reinit`). The BN running
    statistics are *not* copied (the binary student's pre-BN values have another scale): the
    caller recalibrates them. Only parameter values change, never the model's structure or its
    forward function. Raises :class:`InitError` when the shapes differ.
    """
    if len(model.layers) != len(source.layers):
        raise InitError(f"the init network has {len(source.layers)} weight layers, the student {len(model.layers)}")
    for i, (dst, src) in enumerate(zip(model.layers, source.layers)):
        if tuple(dst.weight.shape) != tuple(src.weight.shape):
            raise InitError(f"layer fc{i}: the init network's weight is {tuple(src.weight.shape)}, "
                            f"the student's {tuple(dst.weight.shape)} (init needs the same shape)")
    for dst, src in zip(model.layers, source.layers):
        dst.weight.copy_(src.weight)
        reinit = getattr(dst.quantizer, "reinit", None)
        if reinit is not None:
            reinit(dst.weight, rotation)
    for dst, src in zip(model.bns, source.bns):
        if dst.weight is not None and src.weight is not None:
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)


def default_teacher_cache():
    """Directory for cached teacher checkpoints: ``$XNORFLOW_CACHE/teachers`` or ``~/.cache/xnorflow/teachers``."""
    root = os.environ.get("XNORFLOW_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "xnorflow")
    return os.path.join(root, "teachers")


# Networks that --distill / --init can train (and cache) themselves: (method, method_overrides).
# "fp": float weights, ReLU. "binact": float weights with IR-Net's binary (EDE) activations, the
# first stage of two-stage binarisation (Real-to-Binary, ReActNet): the student then only has to
# binarise the weights.
TRAINED_SOURCES = {"fp": ("fp", None), "binact": ("irnet", {"weight": "float"})}


def load_or_train_teacher(spec, dataset, ds, hidden, input_bits, epochs, seed, batch_size, lr, augment_shift,
                          cache_dir=None, progress=True, arch=None, augment_flip=False):
    """The distillation teacher and a dict describing it (for metrics.json).

    ``spec`` is the path of an xnorflow checkpoint (any method; it must take the same
    ``input_bits``-bit inputs of the same dataset) or a key of :data:`TRAINED_SOURCES` (``"fp"``
    or ``"binact"``), e.g. ``"fp"``: a full-precision network of
    width ``hidden`` trained with :func:`train` (method ``fp``, the student's seed, batch and
    augmentation, learning rate ``lr``, ``epochs`` epochs; a CNN of the student's ``arch`` when
    given, see :func:`xnorflow.sw.train.conv.cnn_arch`). ``"fp"`` teachers are cached in ``cache_dir`` under a
    key of all those settings; a cache hit costs no training time, and the returned dict then
    reports the seconds the cached teacher took when it was trained.
    """
    from .checkpoint import load_checkpoint, save_checkpoint
    if spec not in TRAINED_SOURCES:
        try:
            model, meta = load_checkpoint(spec)
        except Exception as e:
            raise TeacherError(str(e)) from None
        if meta["input_bits"] != input_bits or meta["in_features"] != ds.in_features \
                or meta["num_classes"] != ds.num_classes:
            raise TeacherError(f"teacher {spec}: takes {meta['input_bits']}-bit inputs of {meta['in_features']} "
                             f"features with {meta['num_classes']} classes; the student needs {input_bits}-bit, "
                             f"{ds.in_features} features, {ds.num_classes} classes")
        m = meta.get("metrics") or {}
        return model, {"teacher": spec, "teacher_method": meta["method"], "teacher_hidden": meta["hidden"],
                       "teacher_test_accuracy": m.get("test_accuracy"),
                       "teacher_train_seconds": m.get("train_seconds"), "teacher_cached": True}
    # "fp" keys keep their original form, so teachers cached before "binact" existed stay valid.
    # The arch and the flip enter the key only when set, so MLP teachers cached before keep their keys.
    key = {"v": 1, **({"kind": spec} if spec != "fp" else {}), "dataset": dataset, "hidden": list(hidden),
           "input_bits": input_bits, "epochs": epochs, "seed": seed, "batch_size": batch_size, "lr": lr,
           "augment_shift": augment_shift, **({"arch": arch} if arch else {}),
           **({"augment_flip": True} if augment_flip else {})}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    cache_dir = cache_dir or default_teacher_cache()
    path = os.path.join(cache_dir, f"{spec}-{dataset}-{digest}.pt")
    state_path = path[:-len(".pt")] + ".state.pt"  # an interrupted teacher continues from here
    cached = os.path.isfile(path)
    if cached:
        model, meta = load_checkpoint(path)
        m = meta["metrics"]
    else:
        method, overrides = TRAINED_SOURCES[spec]
        # A CNN student needs a CNN teacher: without the arch this trained an MLP.
        overrides = {**(overrides or {}), **({"arch": arch} if arch else {})} or None
        model, meta, m = train(method, dataset, hidden=list(hidden), input_bits=input_bits, epochs=epochs, seed=seed,
                               batch_size=batch_size, lr=lr, progress=progress, ds=ds, augment_shift=augment_shift,
                               augment_flip=augment_flip,
                               distill=None, label_smoothing=0.0, weight_decay=0.0, init=None,
                               dropout=0.0, input_dropout=0.0, bn_recalibrate=False, method_overrides=overrides,
                               state_path=state_path, resume=True)
        meta["metrics"]["teacher_key"] = key
        save_checkpoint(path, model, meta)
        if os.path.exists(state_path):
            os.remove(state_path)
        model.eval()
    return model, {"teacher": spec, "teacher_method": meta["method"], "teacher_hidden": list(hidden),
                   "teacher_epochs": epochs, "teacher_test_accuracy": m["test_accuracy"],
                   "teacher_train_seconds": m["train_seconds"], "teacher_cached": cached, "teacher_path": path}


def train(method, dataset, hidden=None, input_bits=None, epochs=None, seed=0, batch_size=None, lr=None,
          data_dir=None, progress=True, method_overrides=None, ds=None, augment_shift=None, distill="default",
          distill_alpha=None, distill_temperature=None, teacher_epochs=None, teacher_hidden=None,
          teacher_lr=None, label_smoothing=None, weight_decay=None, teacher_cache=None, init="default",
          dropout=None, input_dropout=None, bn_recalibrate=None, augment_flip=False, state_path=None,
          resume=False, on_epoch=None, state_every=600.0):
    """Train ``method`` on ``dataset``; return ``(model, meta, metrics)``.

    ``meta`` is what :func:`xnorflow.sw.train.checkpoint.save_checkpoint` needs beside the model;
    ``metrics`` is the content of ``metrics.json`` (summary + per-epoch history).
    ``ds`` may pass an already loaded :class:`xnorflow.sw.data.Dataset` (benchmarks reuse it).
    ``augment_shift``: random image shifts of up to this many pixels during training (0 = off).
    ``augment_flip``: mirror half of each training batch left-right (square single-channel images).

    Recipe options (``None``/``"default"`` = the dataset default, see :data:`RECIPE_OPTIONS`):
    ``distill`` = ``None`` (plain cross-entropy), ``"fp"`` (distil from a full-precision net of
    width ``teacher_hidden``, default the student's, trained for ``teacher_epochs`` at ``teacher_lr`` and cached in
    ``teacher_cache``) or a checkpoint path; ``distill_alpha``/``distill_temperature`` as in
    :class:`xnorflow.sw.train.losses.Distillation`; ``label_smoothing`` for the cross-entropy term;
    ``weight_decay`` Adam's L2 on all float parameters. Only the training loss changes: the
    trained model computes exactly what it did before.
    ``init`` = ``None`` (random initialisation), ``"fp"`` (start from the full-precision network
    of the student's own shape, the same cached network ``distill="fp"`` uses when
    ``teacher_hidden`` is the student's), ``"binact"`` (the same shape with float weights and
    binary activations: stage 1 of two-stage binarisation) or a checkpoint path of the same shape: see
    :func:`init_from`. It changes the starting point only, never the model.
    ``dropout``/``input_dropout``: training-only dropout probability on the binary activations
    between layers / on the input pixels (MLP and CNN; the eval forward and the deployed model are
    unchanged). ``bn_recalibrate``: after training, recompute every batch norm's running statistics
    as the average over the whole training set with the final binary weights and no dropout
    (:func:`xnorflow.sw.train.trainer.recalibrate_bn`); metrics then also hold
    ``test_accuracy_before_recalibration``.
    ``state_path``/``resume``: the training state (after every epoch, and every ``state_every``
    seconds within one) and whether to continue from it (:func:`xnorflow.sw.train.trainer.fit`,
    :mod:`xnorflow.sw.train.resume`); an ``"fp"``/``"binact"`` teacher
    trained here always keeps and resumes its own state beside its cache file. BWNH trains in
    three stages and does not resume. ``on_epoch(history)``: called after every epoch of the
    student (all stages), e.g. to redraw a plot while a long run goes on.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    defaults = resolve_defaults(method, dataset)
    hidden = list(defaults["hidden"] if hidden is None else hidden)
    input_bits = int(defaults["input_bits"] if input_bits is None else input_bits)
    epochs = int(defaults["epochs"] if epochs is None else epochs)
    batch_size = int(defaults["batch_size"] if batch_size is None else batch_size)
    lr = float(defaults["lr"] if lr is None else lr)
    augment_shift = int(defaults.get("augment_shift", 0) if augment_shift is None else augment_shift)
    recipe = {k: defaults.get(k, v) for k, v in RECIPE_OPTIONS.items()}
    given = {"distill_alpha": distill_alpha, "distill_temperature": distill_temperature,
             "teacher_epochs": teacher_epochs, "teacher_hidden": teacher_hidden, "teacher_lr": teacher_lr,
             "label_smoothing": label_smoothing,
             "weight_decay": weight_decay, "dropout": dropout, "input_dropout": input_dropout,
             "bn_recalibrate": bn_recalibrate}
    recipe.update({k: v for k, v in given.items() if v is not None})
    if distill != "default":
        recipe["distill"] = None if distill in (None, "", "none") else distill
    if init != "default":
        recipe["init"] = None if init in (None, "", "none") else init
    if recipe["init"] and method == "bwnh":
        raise InitError("bwnh pre-trains and hashes its own float network; --init is for the other methods")
    if resume and method == "bwnh":
        raise ResumeError("bwnh trains in three stages (pre-training, hashing, fine-tuning) and cannot resume; "
                          "run it again without --resume")
    cfg = copy.deepcopy(METHOD_CONFIGS[method])
    cfg.update(method_overrides or {})
    for key in ("dropout", "input_dropout"):
        p = float(recipe[key] or 0.0)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{key} must be in [0, 1), got {p}")
        if p > 0:
            cfg[key] = p  # only when on, so method_config of runs without dropout is unchanged

    ds = ds or datamod.load_dataset(dataset, data_dir)
    train_t, test_t = tensors(ds, input_bits)
    aug = None
    if augment_shift or augment_flip:
        side = int(round(ds.in_features ** 0.5))
        if side * side != ds.in_features:
            raise ValueError("augment_shift and augment_flip need square single-channel images")
        aug = chain(random_shift(side, augment_shift) if augment_shift else None,
                    random_flip(side) if augment_flip else None)
    def trained_source(spec, width):
        """The teacher or init source ``spec`` for this student (see load_or_train_teacher)."""
        return load_or_train_teacher(
            spec, dataset, ds, width, input_bits, int(recipe["teacher_epochs"]), seed, batch_size,
            float(recipe["teacher_lr"]), augment_shift, teacher_cache, progress, arch=cfg.get("arch"),
            augment_flip=augment_flip)

    t0 = time.time()
    teacher_info = {}
    if recipe["distill"]:
        teacher, teacher_info = trained_source(recipe["distill"], list(recipe["teacher_hidden"] or hidden))
        criterion = Distillation(teacher, recipe["distill_alpha"], recipe["distill_temperature"],
                                 recipe["label_smoothing"])
        teacher_info["teacher_seconds_in_this_run"] = 0.0 if teacher_info["teacher_cached"] else time.time() - t0
    else:
        criterion = CrossEntropy(recipe["label_smoothing"])
    init_source, init_info = None, {}
    if recipe["init"]:
        t1 = time.time()
        try:
            init_source, info = trained_source(recipe["init"], hidden)
        except TeacherError as e:
            raise InitError(str(e)) from None
        init_info = {"init_source_test_accuracy": info["teacher_test_accuracy"], "init_cached": info["teacher_cached"],
                     "init_path": info.get("teacher_path", recipe["init"]),
                     "init_seconds_in_this_run": 0.0 if info["teacher_cached"] else time.time() - t1}
    fit_kw = {"loss": criterion, "weight_decay": float(recipe["weight_decay"]), "on_epoch": on_epoch,
              "state_every": state_every}
    torch.manual_seed(seed)
    extra = {}
    history = []
    if method == "bwnh":
        model, extra = _train_bwnh(ds, cfg, hidden, input_bits, epochs, seed, batch_size, lr, train_t, test_t,
                                   progress, history, aug, fit_kw)
    else:
        model = build_model(ds.in_features, hidden, ds.num_classes, input_bits, cfg)
        run_key = {"method": method, "dataset": dataset, "hidden": hidden, "input_bits": input_bits,
                   "epochs": epochs, "seed": seed, "batch_size": batch_size, "lr": lr,
                   "augment_shift": augment_shift, "augment_flip": bool(augment_flip),
                   "recipe": recipe, "method_config": cfg}
        notes = {}
        if init_source is not None:
            saved = (load_fit_state(state_path, method, run_key).get("notes", {})
                     if resume and state_path and os.path.isfile(state_path) else {})
            if "init_test_accuracy" in saved:
                # Resuming: the state's weights replace the initialised ones, so initialising
                # (minutes for a CNV: BN recalibration and a test pass) would be thrown away.
                notes = {"init_test_accuracy": saved["init_test_accuracy"]}
            else:
                init_from(model, init_source, cfg.get("init_rotation", "identity"))
                recalibrate_bn(model, train_t[0][:10000])
                notes = {"init_test_accuracy": evaluate(model, *test_t)}
            init_info.update(notes)
        fit(model, train_t, test_t, epochs, lr=lr, batch_size=batch_size, seed=seed,
            callbacks=_callbacks(method, cfg, model, train_t[0]), stage=method, progress=progress,
            history=history, augment=aug, state_path=state_path, resume=resume, run_key=run_key,
            notes=notes, **fit_kw)
        if method == "sbn":
            soft = evaluate(model, *test_t)
            _set_hard(model, True)
            hard = evaluate(model, *test_t)
            sat = schedules.saturation(model, train_t[0][:1000])
            extra = {"soft_test_accuracy": soft, "hard_test_accuracy": hard,
                     "swap_accuracy_change": hard - soft, "final_nu": schedules.NuSchedule(
                         cfg["nu_start"], cfg["nu_end"]).value(epochs - 1, epochs), **{
                         "final_" + k: v for k, v in sat.items()}}
    if recipe["bn_recalibrate"]:
        extra["test_accuracy_before_recalibration"] = evaluate(model, *test_t)
        recalibrate_bn(model, train_t[0])
    train_seconds = time.time() - t0
    resumed = [i for i, e in enumerate(history) if e.get("resumed")]
    if resumed:  # the epochs (and the part of one) an earlier, interrupted process ran
        train_seconds += sum(e["seconds"] for e in history[:resumed[-1]])
        train_seconds += history[resumed[-1]].get("seconds_before_resume", 0.0)
    model.eval()
    test_acc = evaluate(model, *test_t)
    reason = model.not_deployable()
    metrics = {
        "method": method, "dataset": dataset, "test_accuracy": test_acc,
        "train_accuracy": evaluate(model, *train_t), "epochs": epochs, "train_seconds": train_seconds,
        "input_bits": input_bits, "hidden": hidden, "seed": seed, "batch_size": batch_size, "lr": lr,
        "augment_shift": augment_shift, "augment_flip": bool(augment_flip), "init": recipe["init"], **init_info, "distill": recipe["distill"],
        **{k: recipe[k] for k in ("label_smoothing", "weight_decay", "dropout", "input_dropout", "bn_recalibrate")},
        **({k: recipe[k] for k in ("distill_alpha", "distill_temperature")} if recipe["distill"] else {}),
        **teacher_info, "loss": criterion.describe()["loss"],
        "deployable": reason is None, "not_deployable_reason": reason,
        "torch_threads": torch.get_num_threads(), "resumed_at_epochs": [history[i]["epoch"] for i in resumed],
        **extra, "history": history,
    }
    meta = {
        "method": method, "dataset": dataset, "input_bits": input_bits, "in_features": ds.in_features,
        "hidden": hidden, "num_classes": ds.num_classes, "max_value": ds.max_value, "method_config": cfg,
        "metrics": {k: v for k, v in metrics.items() if k != "history"},
    }
    return model, meta, metrics


@torch.no_grad()
def _layer_inputs(model, x):
    """Inputs seen by every layer of ``model`` (eval mode) for the batch ``x``."""
    rec = []
    model.eval()
    model._run(x, rec)
    return [x] + [r["act"] for r in rec[:-1]]


def _train_bwnh(ds, cfg, hidden, input_bits, epochs, seed, batch_size, lr, train_t, test_t, progress, history,
                aug=None, fit_kw=None):
    """BWNH: float pre-training → layer-wise hashing → weight-only fine-tune → binary-activation fine-tune."""
    fit_kw = fit_kw or {}
    e_pre, e_wo, e_bin = _stage_epochs(epochs, [cfg["pretrain_fraction"], cfg["weight_only_fraction"]])
    fp_cfg = {"weight": "float", "act": cfg["pretrain_act"]}
    if cfg.get("arch"):  # a CNN (sw/train/conv.py): the float net has the same architecture
        fp_cfg["arch"] = cfg["arch"]
    fp = build_model(ds.in_features, hidden, ds.num_classes, input_bits, fp_cfg)
    fit(fp, train_t, test_t, e_pre, lr=lr, batch_size=batch_size, seed=seed, stage="bwnh-pretrain",
        progress=progress, history=history, augment=aug, **fit_kw)
    fp_acc = evaluate(fp, *test_t)

    # Weight-only binary model: same float activations, hashed weights.
    wo_cfg = dict(cfg, act=cfg["pretrain_act"])
    wo = build_model(ds.in_features, hidden, ds.num_classes, input_bits, wo_cfg)
    wo.load_state_dict(fp.state_dict(), strict=False)
    gen = torch.Generator().manual_seed(seed)
    n = len(train_t[0])
    sample = train_t[0][torch.randperm(n, generator=gen)[:min(n, cfg["hash_samples"])]]
    hash_logs = []
    for i, layer in enumerate(wo.layers):
        # Inputs come from the already-hashed predecessors (the BWNH paper leaves it open; chosen so, docs/training.md).
        xin = _layer_inputs(wo, sample)[i]
        if hasattr(wo, "hash_inputs"):  # conv layers hash their im2col patches
            xin = wo.hash_inputs(i, xin)
        codes, alpha, obj = bwnhmod.hash_layer(fp.layers[i].weight, xin, cfg["hash_iterations"])
        with torch.no_grad():
            layer.weight.copy_(codes * alpha.abs().unsqueeze(1))  # latent weights whose sign is the code
            layer.quantizer.alpha.copy_(alpha)
        hash_logs.append({"layer": f"fc{i}", "objective": obj,
                          "sign_agreement_with_float": (codes == torch.where(fp.layers[i].weight >= 0, 1.0, -1.0))
                          .float().mean().item()})
    recalibrate_bn(wo, train_t[0])
    hashed_acc = evaluate(wo, *test_t)
    fit(wo, train_t, test_t, e_wo, lr=lr, batch_size=batch_size, seed=seed + 1, stage="bwnh-weight-only",
        progress=progress, history=history, augment=aug, **fit_kw)
    wo_acc = evaluate(wo, *test_t)

    model = build_model(ds.in_features, hidden, ds.num_classes, input_bits, cfg)
    model.load_state_dict(wo.state_dict())
    recalibrate_bn(model, train_t[0])
    switch_acc = evaluate(model, *test_t)
    fit(model, train_t, test_t, e_bin, lr=lr, batch_size=batch_size, seed=seed + 2, stage="bwnh-binary-act",
        progress=progress, history=history, augment=aug, **fit_kw)
    extra = {
        "float_pretrain_accuracy": fp_acc, "hashed_weight_only_accuracy": hashed_acc,
        "weight_only_accuracy": wo_acc, "binary_act_before_finetune_accuracy": switch_acc,
        "deployable_accuracy": evaluate(model, *test_t), "hashing": hash_logs,
        "stage_epochs": {"pretrain": e_pre, "weight_only": e_wo, "binary_act": e_bin},
    }
    return model, extra
