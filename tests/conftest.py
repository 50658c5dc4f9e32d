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


def pytest_collection_modifyitems(config, items):
    """Synthesis tests run first, then the other slow ones. They are the suite's longest (an
    iCEBreaker build is ~100 s): started last, one of them kept a worker busy after the other
    had finished (`run-tests` spreads the suite over two workers, which take tests in
    collection order)."""
    def rank(item):
        return (item.get_closest_marker("synth") is None, item.get_closest_marker("slow") is None)
    items.sort(key=rank)
