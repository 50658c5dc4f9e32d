"""Shared fixtures for the training tests: one thread, digits tensors, cached short training runs."""
import functools

import pytest
import torch

torch.set_num_threads(1)


@functools.lru_cache(maxsize=None)
def _digits():
    from xnorflow.sw.data import load_dataset
    return load_dataset("digits")


@functools.lru_cache(maxsize=None)
def trained(method, epochs, hidden=(128, 128), seed=0):
    """Train ``method`` on digits once per session (cached) and return ``(model, meta, metrics)``."""
    from xnorflow.sw.train import methods
    return methods.train(method, "digits", hidden=list(hidden), epochs=epochs, seed=seed, progress=False,
                         ds=_digits())


@pytest.fixture(scope="session")
def digits():
    """The raw digits :class:`xnorflow.sw.data.Dataset`."""
    return _digits()


@pytest.fixture(scope="session")
def digits_tensors(digits):
    """``((x_train, y_train), (x_test, y_test))`` with 4-bit integer inputs."""
    from xnorflow.sw.train.methods import tensors
    return tensors(digits, 4)
