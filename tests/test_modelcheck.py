"""once_per_model: a model's numerical check runs once, without gradients; a check that raises says False."""

import gc

import torch

from bif.core.modelcheck import once_per_model


def test_a_check_runs_once_per_model_without_gradients_and_is_forgotten_with_the_model():
    calls = []

    @once_per_model
    def check(model):
        calls.append(torch.is_grad_enabled())
        return True

    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    assert check(a) and check(a) and check(b)
    assert calls == [False, False], "once for a, once for b, both under no_grad"
    del a
    gc.collect()
    assert len(check.verdicts) == 1, "the deleted model is forgotten"


def test_a_check_that_raises_says_false_and_is_remembered():
    calls = []

    @once_per_model
    def check(model):
        calls.append(1)
        return model.base_model is not None  # a Linear has no base_model: AttributeError

    m = torch.nn.Linear(2, 2)
    assert check(m) is False and check(m) is False
    assert calls == [1]
