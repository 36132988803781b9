"""Helpers for users' own test suites.

:func:`assert_layer_ok` runs :func:`layerlab.check_layer` and raises an
``AssertionError`` carrying the whole report when a test fails, so that a
layer's check becomes one line of a pytest (or unittest) suite:

.. code-block:: python

    # test_my_layers.py
    import layerlab as ll
    from my_layers import MyELU

    def test_my_elu():
        ll.testing.assert_layer_ok(MyELU(20), (20, 24, 24))

    def test_my_elu_quick():               # leave out the slowest tests
        ll.testing.assert_layer_ok(MyELU(20), (20, 24, 24),
                                   skip=("compile", "save_load_fresh_process"))
"""

from __future__ import annotations

from typing import Any, Iterable

from .checking import CheckReport, check_layer

__all__ = ["assert_layer_ok"]


def assert_layer_ok(layer: Any, input_size: Any, skip: Iterable[str] = (), *,
                    tests: Iterable[str] | None = None, **options: Any) -> CheckReport:
    """Check ``layer`` (a layerlab layer or any ``torch.nn.Module``) with
    :func:`~layerlab.check_layer`, quietly; raise ``AssertionError`` with
    the whole report if any test failed.

    Args:
        layer, input_size: as for :func:`~layerlab.check_layer`.
        skip: names of tests to leave out (see
            :data:`layerlab.checking.TEST_NAMES`).
        tests: run only these tests.
        options: further :func:`~layerlab.check_layer` options (``seed``,
            ``max_elements``, ...).

    Returns:
        The report, when every test passed or was skipped.

    Examples:
        >>> import layerlab as ll
        >>> report = ll.testing.assert_layer_ok(ll.Tanh(), (5,), skip=("compile",))
        >>> report.passed
        True
    """
    options.setdefault("verbose", False)
    report = check_layer(layer, input_size, tests=tests, skip=skip, **options)
    if not report.passed:
        raise AssertionError(f"check_layer failed {', '.join(report.failed_tests)} for "
                             f"{report.layer}:\n{report.text}")
    return report
