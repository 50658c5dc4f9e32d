"""``training.png``: loss and accuracy curves of a training history (matplotlib, Agg backend)."""
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..xnf import atomic_write  # noqa: E402


def plot_history(history, path, title=""):
    """Plot loss (left) and train/test accuracy (right) over all epochs of all stages to ``path``."""
    xs = list(range(1, len(history) + 1))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(xs, [h["loss"] for h in history], label="train loss")
    a.set_xlabel("epoch (all stages)")
    a.set_ylabel("cross-entropy")
    a.set_yscale("log")
    b.plot(xs, [100 * h["train_acc"] for h in history], label="train (train-mode forward)")
    b.plot(xs, [100 * h["test_acc"] for h in history], label="test (eval forward)")
    b.set_xlabel("epoch (all stages)")
    b.set_ylabel("accuracy (%)")
    stages = [h["stage"] for h in history]
    for i in range(1, len(stages)):
        if stages[i] != stages[i - 1]:
            for ax in (a, b):
                ax.axvline(i + 0.5, color="grey", lw=0.8, ls="--")
    for ax in (a, b):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    # Atomically: the plot is redrawn after every epoch while someone may be looking at it.
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, png.getvalue())
