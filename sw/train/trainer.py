"""The one training loop: Adam + per-step cosine learning rate, epoch callbacks, history.

Nothing here knows about methods: schedules and method-specific logs come from callbacks
(:mod:`xnorflow.sw.train.schedules`), per-step hooks from ``model.after_step()``.
"""
import math
import os
import sys
import time

import torch
from tqdm import tqdm

from ..errors import XnorflowError
from .losses import CrossEntropy
from .resume import load_fit_state, save_fit_state


class DivergedError(XnorflowError, ArithmeticError):
    """The training loss became NaN or infinite: the weights are garbage from then on (a
    learning rate far too large is the usual cause), so training stops at once."""


def random_shift(side, max_shift):
    """Augmentation: shift each ``side×side`` image by a random ``(dy, dx)`` in ``[-max_shift, max_shift]``.

    Vacated pixels become 0 (the integer for "black"), so inputs stay valid k-bit integers and
    the model still computes exactly what the accelerator does. Returns ``f(xb, generator)``.
    """
    def shift(xb, gen):
        b = xb.shape[0]
        img = xb.reshape(b, side, side)
        m = max_shift
        padded = torch.nn.functional.pad(img, (m, m, m, m))
        d = torch.randint(0, 2 * m + 1, (b, 2), generator=gen)
        out = torch.empty_like(img)
        for dy in range(2 * m + 1):
            for dx in range(2 * m + 1):
                sel = (d[:, 0] == dy) & (d[:, 1] == dx)
                if sel.any():
                    out[sel] = padded[sel, dy:dy + side, dx:dx + side]
        return out.reshape(b, -1)
    return shift


def random_flip(side):
    """Augmentation: mirror each ``side×side`` image left-right with probability 1/2.

    A permutation of pixels, so inputs stay valid k-bit integers. Returns ``f(xb, generator)``.
    """
    def flip(xb, gen):
        b = xb.shape[0]
        img = xb.reshape(b, side, side)
        sel = torch.rand(b, generator=gen) < 0.5
        out = img.clone()
        out[sel] = img[sel].flip(-1)
        return out.reshape(b, -1)
    return flip


def chain(*augments):
    """One augmentation ``f(xb, generator)`` applying ``augments`` (None entries skipped) in order; None if empty."""
    steps = [a for a in augments if a is not None]
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def run(xb, gen):
        for step in steps:
            xb = step(xb, gen)
        return xb
    return run


@torch.no_grad()
def evaluate(model, x, y, batch_size=2000):
    """Accuracy (0..1) of ``model`` in eval mode on tensors ``x`` (k-bit integers as float) and ``y``."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was)
    return correct / max(len(x), 1)


@torch.no_grad()
def recalibrate_bn(model, x, batch_size=1000):
    """Recompute every BatchNorm's running statistics as the exact average over ``x`` (train mode, no grad).

    Only the batch norms see training mode: training-only regularisers (``nn.Dropout``) stay off,
    so the statistics are those of the eval forward's pre-BN values. Each batch contributes its
    mean and unbiased variance with equal weight (``momentum=None``).
    """
    was = model.training
    saved = []
    for bn in model.bns:
        bn.reset_running_stats()
        saved.append(bn.momentum)
        bn.momentum = None  # cumulative moving average = plain mean over batches
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size])
    for bn, m in zip(model.bns, saved):
        bn.momentum = m
    model.train(was)


def fit(model, train, test, epochs, lr=1e-3, batch_size=64, callbacks=(), seed=0, stage="train",
        weight_decay=0.0, progress=True, history=None, augment=None, loss=None, state_path=None,
        resume=False, run_key=None, on_epoch=None, state_every=600.0, notes=None):
    """Train ``model`` for ``epochs`` epochs; return the history list (one dict per epoch).

    ``progress``: ``True`` = tqdm bar + one line per epoch on stderr, ``"epochs"`` = the epoch
    lines only, ``False`` = silent. ``train``/``test`` are ``(x, y)`` tensor pairs. The learning rate follows a cosine from
    ``lr`` to 0 over all steps. Batches are drawn from a generator seeded with ``seed``.
    Each history entry holds ``stage, epoch, loss, train_acc, test_acc, seconds`` plus what
    the callbacks returned. ``augment(xb, generator)`` optionally transforms each training batch.
    ``loss(scores, xb, yb)`` is the training loss (:mod:`xnorflow.sw.train.losses`; default plain
    cross-entropy); ``weight_decay`` is Adam's L2 term on every trainable parameter.

    ``state_path``: after every epoch the model, optimiser, schedule, batch-order generator,
    global RNG and this stage's history are written there (:mod:`xnorflow.sw.train.resume`). With
    ``resume`` and that file present, training continues from its last saved point (its
    ``run_key`` and ``stage`` must be this run's) and ends exactly where an uninterrupted run
    would; the first epoch run after resuming is marked ``resumed: True`` in the history.
    Within an epoch the state is also written every ``state_every`` seconds (at a step
    boundary, with the epoch's batch order, step and running sums; None = at epoch ends only),
    so a run stopped mid-epoch loses at most that much work; callbacks then get
    ``on_epoch_resume`` instead of ``on_epoch_start`` for the epoch it continues. ``notes``
    are stored in every state as they are (:func:`xnorflow.sw.train.resume.save_fit_state`).
    ``on_epoch(history)`` is called after every epoch (the CLI redraws ``training.png``).
    """
    criterion = loss if loss is not None else CrossEntropy()
    history = [] if history is None else history
    x, y = train
    n = len(x)
    steps_per_epoch = math.ceil(n / batch_size)
    total = max(epochs * steps_per_epoch, 1)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    gen = torch.Generator().manual_seed(seed)
    first = len(history)  # earlier stages' entries (BWNH) are not this stage's state
    start, partial = 0, None
    if resume and state_path and os.path.isfile(state_path):
        state = load_fit_state(state_path, stage, run_key)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history.extend(state["history"])
        start, partial = state["epochs_done"], state.get("partial")
        if progress:
            where = (f"in epoch {start + 1}/{epochs} at step {partial['step']}/{steps_per_epoch}"
                     if partial else f"after epoch {start}/{epochs}")
            print(f"[{stage}] resuming {where} from {state_path}", file=sys.stderr, flush=True)
    for epoch in range(start, epochs):
        t0 = time.time()
        if partial is not None and epoch == start:
            # The middle of an epoch: its batch order, position and sums come from the state;
            # callbacks restore what they set outside the model (the state has the rest).
            logs = dict(partial["epoch_logs"])
            for cb in callbacks:
                cb.on_epoch_resume(epoch, epochs, model)
            perm, first_step = partial["perm"], partial["step"]
            loss_sum, correct = partial["loss_sum"], partial["correct"]
            t0 -= partial["epoch_seconds"]
            model.train()
        else:
            logs = {}
            for cb in callbacks:
                logs.update(cb.on_epoch_start(epoch, epochs, model))
            model.train()
            perm = torch.randperm(n, generator=gen)
            first_step, loss_sum, correct = 0, 0.0, 0
        saved_at = time.time()
        bar = tqdm(range(first_step, steps_per_epoch), desc=f"{stage} {epoch + 1}/{epochs}", file=sys.stderr,
                   disable=progress is not True, leave=False, initial=first_step, total=steps_per_epoch)
        for b in bar:
            idx = perm[b * batch_size:(b + 1) * batch_size]
            if len(idx) < 2:  # batch norm needs two samples; a 1-sample tail batch is dropped
                continue
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, gen)
            out = model(xb)
            batch_loss = criterion(out, xb, yb)
            step_loss = batch_loss.item()
            if not math.isfinite(step_loss):
                raise DivergedError(f"training diverged: the loss became {step_loss} at step {b + 1} of "
                                    f"epoch {epoch + 1} ({stage}, learning rate {lr:g}); use a smaller one")
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
            sched.step()
            model.after_step()
            loss_sum += step_loss * len(idx)
            correct += (out.argmax(1) == yb).sum().item()
            if (state_path and state_every is not None and b + 1 < steps_per_epoch
                    and time.time() - saved_at >= state_every):
                save_fit_state(state_path, stage, run_key, epoch, model, opt, sched, gen, history[first:],
                               partial={"step": b + 1, "perm": perm, "loss_sum": loss_sum, "correct": correct,
                                        "epoch_logs": logs, "epoch_seconds": time.time() - t0}, notes=notes)
                saved_at = time.time()
        bar.close()
        test_acc = evaluate(model, *test)
        for cb in callbacks:
            logs.update(cb.on_epoch_end(epoch, epochs, model))
        entry = {"stage": stage, "epoch": epoch, "loss": loss_sum / n, "train_acc": correct / n,
                 "test_acc": test_acc, "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0}
        entry.update(logs)
        if epoch == start and (start > 0 or partial is not None):
            entry["resumed"] = True
            if partial is not None:  # this epoch began in an earlier process
                entry["resumed_at_step"] = partial["step"]
                entry["seconds_before_resume"] = partial["epoch_seconds"]
        history.append(entry)
        if state_path:
            save_fit_state(state_path, stage, run_key, epoch + 1, model, opt, sched, gen, history[first:],
                           notes=notes)
        if on_epoch is not None:
            on_epoch(history)
        if progress:
            print(f"[{stage}] epoch {epoch + 1}/{epochs} loss {entry['loss']:.4f} "
                  f"train {100 * entry['train_acc']:.2f}% test {100 * test_acc:.2f}% "
                  f"({entry['seconds']:.1f} s)", file=sys.stderr, flush=True)
    return history
