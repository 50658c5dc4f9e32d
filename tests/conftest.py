"""Shared fixtures (the helpers behind them are in tests/xnf_testing.py)."""
import pytest

from xnf_testing import trained_digits_model


@pytest.fixture(scope="session")
def digits_models():
    """A function ``method -> (checkpoint, xnf)`` giving cached, really trained digits models."""
    return trained_digits_model


@pytest.fixture(scope="session")
def digits_cnns():
    """A function ``method -> (checkpoint, xnf)`` giving cached, really trained digits CNNs."""
    return lambda method: trained_digits_model(method, cnn=True)
