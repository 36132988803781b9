"""Data sets, generated offline and deterministically (never downloaded)."""

from .digits import digits_test, digits_train, make_digits, show_digits
from .disc import disc, disc_train_test

__all__ = ["digits_train", "digits_test", "make_digits", "show_digits", "disc",
           "disc_train_test"]
