"""Training losses: plain cross-entropy and knowledge distillation from a float teacher.

A loss object is called by :func:`xnorflow.sw.train.trainer.fit` as ``loss(scores, xb, yb)`` with the
student's class scores, the (augmented) input batch and the labels; it returns a scalar tensor.
Losses only change what the student is *trained* towards: the student model, its eval forward
and therefore what the accelerator computes are unchanged.

Distillation (Hinton et al. 2015; ReActNet trains its BNNs with a distributional loss of the
same kind) mixes cross-entropy on the labels with the KL divergence between temperature-softened
teacher and student distributions::

    p_T = softmax(teacher(x) / T)       q_T = softmax(student(x) / T)
    L   = (1 − a) · CE(student(x), y) + a · T² · KL(p_T ‖ q_T)

The ``T²`` keeps the soft term's gradient magnitude independent of ``T``. The teacher runs in
eval mode without gradients on the same augmented batch the student sees.
"""
import torch
from torch.nn import functional as F


class CrossEntropy:
    """``CE(scores, y)`` with optional label smoothing ``eps`` (``torch``'s definition)."""

    def __init__(self, label_smoothing=0.0):
        self.label_smoothing = float(label_smoothing)

    def __call__(self, scores, xb, yb):
        return F.cross_entropy(scores, yb, label_smoothing=self.label_smoothing)

    def describe(self):
        """The loss's settings, for metrics.json."""
        return {"loss": "cross_entropy", "label_smoothing": self.label_smoothing}


def distillation_kl(student_scores, teacher_scores, temperature):
    """``T² · KL(softmax(t/T) ‖ softmax(s/T))``, averaged over the batch."""
    t = float(temperature)
    log_q = F.log_softmax(student_scores / t, dim=1)
    log_p = F.log_softmax(teacher_scores / t, dim=1)
    return (t * t) * F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)


class Distillation:
    """``(1 − alpha)·CE(s, y) + alpha·T²·KL(softmax(teacher/T) ‖ softmax(s/T))``.

    ``teacher`` is any module mapping the input batch to class scores (e.g. a float
    :class:`xnorflow.sw.train.models.BinaryMLP` loaded from a checkpoint); it is put in eval mode,
    frozen and evaluated under ``torch.no_grad``.
    """

    def __init__(self, teacher, alpha=0.9, temperature=4.0, label_smoothing=0.0):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"distillation alpha must be in [0, 1], got {alpha}")
        if temperature <= 0:
            raise ValueError(f"distillation temperature must be positive, got {temperature}")
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.label_smoothing = float(label_smoothing)

    @torch.no_grad()
    def teacher_scores(self, xb):
        """The teacher's class scores for ``xb`` (float32)."""
        return self.teacher(xb).float()

    def __call__(self, scores, xb, yb):
        loss = distillation_kl(scores, self.teacher_scores(xb), self.temperature)
        if self.alpha < 1.0:
            ce = F.cross_entropy(scores, yb, label_smoothing=self.label_smoothing)
            loss = (1.0 - self.alpha) * ce + self.alpha * loss
        return loss

    def describe(self):
        """The loss's settings, for metrics.json."""
        return {"loss": "distillation", "distill_alpha": self.alpha, "distill_temperature": self.temperature,
                "label_smoothing": self.label_smoothing}
