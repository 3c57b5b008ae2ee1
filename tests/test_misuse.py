"""The catalogue of misuse: each way of holding a Trial wrong gets an error (or, where training can go on, a
warning) whose message names the problem and the fix.

One test per misuse. Each asserts the exception type and, with a regular expression, both the problem
and the fix in the message.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import EarlyStopping, TerminateOnNaN
from torchbearer.errors import (
    BackwardError,
    BatchError,
    ConfigurationError,
    ConfigurationTypeError,
    CriterionError,
    MetricError,
    ModelCallError,
    StateDictError,
    TorchbearerError,
    TorchbearerWarning,
    UnknownMetricError,
)
from torchbearer.metrics import CategoricalAccuracy, mean


def _trial(model=None, criterion=None, x=None, y=None, **kwargs) -> Trial:
    """A Linear(4, 3) classifier with SGD on 8 samples in batches of 4 (override any part)."""
    model = nn.Linear(4, 3) if model is None else model
    criterion = nn.CrossEntropyLoss() if criterion is None else criterion
    x = torch.randn(8, 4) if x is None else x
    y = torch.randint(0, 3, (8,)) if y is None else y
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trial = Trial(model, optimizer, criterion, verbose=0, **kwargs)
    return trial.with_train_data(x, y, batch_size=4, num_workers=0)


def _batches(*batches) -> list:
    """A list used as a generator: each item is one batch, exactly as given."""
    return list(batches)


# ------------------------------------------------------------------------------------------- batch structure
def test_batch_with_three_items_is_refused_naming_its_length():
    loader = _batches((torch.randn(2, 4), torch.zeros(2, dtype=torch.long), torch.zeros(2)))
    trial = _trial().with_train_generator(loader)
    with pytest.raises(BatchError, match=r"pair \(x, y\).*tuple with 3 items.*return \(input, target\)"):
        trial.run(1)


def test_dict_batch_is_refused_suggesting_a_batch_loader():
    trial = _trial().with_train_generator(_batches({"x": torch.randn(2, 4), "y": torch.zeros(2)}))
    with pytest.raises(BatchError, match=r"gave a dict with a single object.*with_loader\(\)"):
        trial.run(1)


def test_empty_prediction_batch_is_refused():
    trial = _trial().with_test_generator(_batches(()))
    with pytest.raises(BatchError, match=r"x, \(x,\) or \(x, y\).*empty tuple.*return the input"):
        trial.predict()


def test_evaluate_on_unlabelled_test_data_suggests_predict():
    trial = _trial().with_test_data(torch.randn(4, 4), batch_size=2, num_workers=0)
    with pytest.raises(BatchError, match=r"list with 1 items.*for unlabelled data use predict\(\)"):
        trial.evaluate(data_key=torchbearer.TEST_DATA)


# ------------------------------------------------------------------------------------------- targets and criterion
def test_output_and_target_of_different_shapes_are_both_named():
    trial = _trial(criterion=nn.MSELoss(), y=torch.randn(8, 5))
    with pytest.warns(UserWarning, match="target size"):  # torch's own broadcast warning comes first
        with pytest.raises(CriterionError, match=r"shape \(4, 3\).*shape \(4, 5\).*make the model's last layer"):
            trial.run(1)


def test_float_targets_for_cross_entropy_suggest_long():
    trial = _trial(y=torch.randint(0, 3, (8,)).float())
    with pytest.raises(CriterionError, match=r"target is torch.float32.*int64 targets.*y\.long\(\)"):
        trial.run(1)


def test_integer_targets_for_a_binary_loss_suggest_float():
    trial = _trial(model=nn.Linear(4, 1), criterion=nn.BCEWithLogitsLoss(), y=torch.ones(8, 1, dtype=torch.long))
    with pytest.raises(CriterionError, match=r"target is torch.int64.*floating-point targets.*y\.float\(\)"):
        trial.run(1)


def test_column_targets_for_cross_entropy_suggest_squeezing():
    trial = _trial(y=torch.randint(0, 3, (8, 1)))
    with pytest.raises(CriterionError, match=r"target has shape \(4, 1\).*shape \(4,\).*y\.squeeze\(1\)"):
        trial.run(1)


def test_class_index_beyond_the_outputs_names_the_number_of_classes():
    trial = _trial(y=torch.full((8,), 5))
    with pytest.raises(CriterionError, match=r"Target 5 is out of bounds.*\[0, 3\).*one score per class"):
        trial.run(1)


class _TwoOutputs(nn.Module):
    """Linear(4, 3) returning its scores and its input, as models that return features do."""

    def __init__(self, as_dict: bool = False) -> None:
        super().__init__()
        self.linear, self.as_dict = nn.Linear(4, 3), as_dict

    def forward(self, x):
        scores = self.linear(x)
        return {"scores": scores, "features": x} if self.as_dict else (scores, x)


def test_a_model_returning_a_tuple_says_the_criterion_received_it_spread_and_how_to_pick_one():
    with pytest.raises(CriterionError, match=r"model returned a tuple of 2 outputs.*criterion received as 2 "
                       r"arguments before the target.*lambda output0, output1, y_true: loss\(output0, y_true\) "
                       r"with loss = CrossEntropyLoss\(\)"):  # fmt: skip
        _trial(model=_TwoOutputs()).run(1)


def test_the_criterion_the_tuple_hint_suggests_trains():
    loss = nn.CrossEntropyLoss()
    trial = _trial(_TwoOutputs(), lambda output0, output1, y_true: loss(output0, y_true), metrics=["loss"])
    assert trial.run(1)[0]["loss"] > 0


def test_a_model_returning_a_dict_says_the_criterion_received_the_dict_and_how_to_pick_one():
    with pytest.raises(CriterionError, match=r"model returned a dict.*criterion received the whole dict.*lambda "
                       r"y_pred, y_true: loss\(y_pred\['scores'\], y_true\)"):  # fmt: skip
        _trial(model=_TwoOutputs(as_dict=True)).run(1)


def test_a_criterion_whose_signature_does_not_fit_is_told_how_it_is_called_not_to_convert_targets():
    def three_way(anchor, positive, negative):
        return (anchor - positive).pow(2).mean() - (anchor - negative).pow(2).mean()

    with pytest.raises(CriterionError, match=r"three_way\(anchor, positive, negative\) cannot take the 2 arguments.*"
                       r"criterion\(y_pred, y_true\).*criterion\(state\)") as caught:  # fmt: skip
        _trial(criterion=three_way).run(1)
    assert "y.float()" not in str(caught.value) and "y.long()" not in str(caught.value)


def test_unreduced_loss_suggests_a_reduction():
    trial = _trial(criterion=nn.CrossEntropyLoss(reduction="none"))
    with pytest.raises(CriterionError, match=r"loss of shape \(4,\).*reduction='mean'"):
        trial.run(1)


def test_criterion_returning_a_float_names_the_criterion_and_asks_for_a_tensor():
    def float_loss(y_pred, y_true):
        return nn.functional.cross_entropy(y_pred, y_true).item()

    with pytest.raises(CriterionError, match=r"criterion float_loss returned a float, not a tensor.*no \.item\(\)"):
        _trial(criterion=float_loss).run(1)


def test_criterion_returning_a_detached_loss_names_the_criterion():
    def detached_loss(y_pred, y_true):
        return nn.functional.cross_entropy(y_pred.detach(), y_true)

    with pytest.raises(CriterionError, match=r"criterion detached_loss does not require grad.*cut the graph.*detach"):
        _trial(criterion=detached_loss).run(1)


def test_a_loss_that_fails_to_back_propagate_describes_the_prediction_and_target():
    class RejectsItsGradient(torch.autograd.Function):  # as torch 2.11's mse_loss does with a bool target
        @staticmethod
        def forward(ctx, value):
            return value.clone()

        @staticmethod
        def backward(ctx, gradient):
            raise RuntimeError("Found dtype Bool but expected Float")

    def strict_loss(y_pred, y_true):
        return RejectsItsGradient.apply(nn.functional.cross_entropy(y_pred, y_true))

    with pytest.raises(BackwardError, match=r"back-propagating the loss failed: Found dtype Bool.*prediction was "
                       r"\(tensor of shape \(4, 3\).*target \(tensor.*int64.*y\.float\(\)") as raised:  # fmt: skip
        _trial(criterion=strict_loss).run(1)
    assert isinstance(raised.value, RuntimeError) and isinstance(raised.value.__cause__, RuntimeError)


def test_a_specific_error_raised_in_backward_keeps_its_type():
    class OutOfMemory(torch.autograd.Function):
        @staticmethod
        def forward(ctx, value):
            return value.clone()

        @staticmethod
        def backward(ctx, gradient):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    def loss(y_pred, y_true):
        return OutOfMemory.apply(nn.functional.cross_entropy(y_pred, y_true))

    with pytest.raises(torch.cuda.OutOfMemoryError, match="out of memory") as raised:
        _trial(criterion=loss).run(1)
    assert not isinstance(raised.value, TorchbearerError)


def test_frozen_model_loss_without_grad_points_at_the_parameters():
    model = nn.Linear(4, 3).requires_grad_(False)
    trial = Trial(model, None, nn.CrossEntropyLoss(), verbose=0)
    trial.with_train_data(torch.randn(8, 4), torch.randint(0, 3, (8,)), batch_size=4, num_workers=0)
    with pytest.raises(CriterionError, match=r"neither does the model's output.*requires_grad=True"):
        trial.run(1)


# ------------------------------------------------------------------------------------------- model, device, dtype
def test_model_on_another_device_than_the_batch_names_both_and_suggests_trial_to():
    trial = _trial(model=nn.Linear(4, 3).to("meta"))  # stands in for a model moved to cuda by hand
    with pytest.raises(ModelCallError, match=r"model is on meta but the batch is on cpu.*trial\.to\(device\)"):
        trial.run(1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA; the meta-device test covers the message")
def test_model_on_cuda_with_batches_on_cpu_suggests_trial_to():
    trial = _trial(model=nn.Linear(4, 3).cuda())
    with pytest.raises(ModelCallError, match=r"model is on cuda:0 but the batch is on cpu.*trial\.to\(device\)"):
        trial.run(1)


def test_float64_model_with_float32_batches_suggests_trial_to_float64():
    trial = _trial(model=nn.Linear(4, 3).double())
    with pytest.raises(ModelCallError, match=r"parameters are torch.float64.*trial\.to\(torch.float64\)"):
        trial.run(1)


def test_integer_inputs_to_a_float_model_suggest_float_inputs():
    trial = _trial(x=torch.ones(8, 4, dtype=torch.long))
    with pytest.raises(ModelCallError, match=r"batch is torch.int64.*floating-point input.*x\.float\(\)"):
        trial.run(1)


def test_steps_without_data_explain_the_none_input():
    trial = Trial(nn.Linear(4, 3), verbose=0).for_train_steps(1)
    with pytest.raises(ModelCallError, match=r"input is None because this pass has no data.*with_train_data"):
        trial.run(1)


# ------------------------------------------------------------------------------------------- data configuration
def test_empty_loader_is_refused():
    loader = DataLoader(TensorDataset(torch.randn(0, 4), torch.zeros(0)))
    with pytest.raises(ConfigurationError, match=r"training generator is empty.*check the dataset"):
        _trial().with_train_generator(loader)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("method, label", [("with_train_data", "training"), ("with_val_data", "validation")])
def test_empty_tensor_data_is_refused_whether_shuffled_or_not(method, label, shuffle):
    with pytest.raises(ConfigurationError, match=rf"{label} generator is empty.*check the dataset"):
        getattr(_trial(), method)(torch.randn(0, 4), torch.zeros(0), shuffle=shuffle)


def test_batch_size_larger_than_the_data_with_drop_last_is_refused():
    loader = DataLoader(TensorDataset(torch.randn(3, 4), torch.zeros(3)), batch_size=8, drop_last=True)
    with pytest.raises(ConfigurationError, match=r"validation generator is empty.*batch_size.*drop_last=True"):
        _trial().with_val_generator(loader, steps=2)


def test_generator_without_length_needs_a_step_count():
    batches = (batch for batch in [(torch.randn(2, 4), torch.zeros(2, dtype=torch.long))])
    with pytest.raises(ConfigurationError, match=r"has no length.*steps=N to with_val_generator.*for_val_steps"):
        _trial().with_val_generator(batches)


def test_one_shot_generator_that_runs_out_is_refused():
    batches = (batch for batch in [(torch.randn(2, 4), torch.zeros(2, dtype=torch.long))])
    trial = _trial().with_train_generator(batches, steps=3)
    with pytest.raises(BatchError, match=r"no batch even after restarting.*one-shot.*DataLoader or a list"):
        trial.run(1)


def test_tensor_given_as_a_generator_suggests_with_train_data():
    with pytest.raises(ConfigurationTypeError, match=r"with_train_generator got a tensor.*with_train_data\(x, y"):
        _trial().with_train_generator(torch.randn(8, 4))


def test_train_data_of_different_lengths_names_both_lengths():
    with pytest.raises(ConfigurationError, match=r"8 samples in x and 6 samples in y.*same length along dim 0"):
        _trial().with_train_data(torch.randn(8, 4), torch.zeros(6))


def test_data_that_is_not_a_tensor_suggests_converting_it():
    with pytest.raises(ConfigurationTypeError, match=r"with_test_data needs tensors.*list.*torch\.as_tensor\(x\)"):
        _trial().with_test_data([[0.0] * 4] * 3)


def test_steps_that_are_not_a_number_are_refused():
    with pytest.warns(UserWarning, match="Number of training steps is not an int"):
        with pytest.raises(ConfigurationError, match=r"training steps must be an int, got 'ten'"):
            _trial().for_train_steps("ten")


def test_run_with_a_non_integer_epoch_count_is_refused():
    with pytest.raises(ConfigurationError, match=r"int number of epochs, got 2\.5"):
        _trial().run(2.5)


# ------------------------------------------------------------------------------------------- metrics
def test_unknown_metric_name_lists_the_known_names_and_the_closest():
    with pytest.raises(UnknownMetricError, match=r"'acuracy' is unknown; known metrics: acc.*did you mean 'accuracy'"):
        Trial(nn.Linear(4, 3), metrics=["acuracy"])
    assert issubclass(UnknownMetricError, KeyError)  # 0.5 raised KeyError: old except clauses still work


def test_metrics_given_as_a_string_suggest_a_list():
    with pytest.raises(ConfigurationTypeError, match=r"metrics must be a list, got the single str 'acc'.*\['acc'\]"):
        Trial(nn.Linear(4, 3), metrics="acc")


def test_metric_class_instead_of_an_instance_suggests_instantiating_it():
    with pytest.raises(ConfigurationTypeError, match=r"CategoricalAccuracy is a class.*CategoricalAccuracy\(\)"):
        Trial(nn.Linear(4, 3), metrics=[CategoricalAccuracy])


def test_entry_that_is_not_a_metric_is_refused():
    with pytest.raises(ConfigurationTypeError, match=r"metric 3 of type int is neither.*such as 'acc'"):
        Trial(nn.Linear(4, 3), metrics=[3])


def test_metric_unsuited_to_the_outputs_is_named_with_what_it_got():
    trial = _trial(metrics=["top_5_acc"])  # three classes only
    with pytest.raises(MetricError, match=r"metric 'top_5_acc'.*prediction \(tensor of shape \(4, 3\).*remove it"):
        trial.run(1)


def test_metric_of_a_misspelt_state_key_is_the_plain_key_error():
    trial = _trial(metrics=[torchbearer.state_key("y_perd")])
    with pytest.raises(KeyError, match="y_perd") as caught:
        trial.run(1)
    assert not isinstance(caught.value, TorchbearerError)


def test_colliding_metric_names_warn_naming_both_metrics():
    trial = _trial(metrics=["loss", mean(torchbearer.LOSS)])
    with pytest.warns(TorchbearerWarning, match=r"'loss' \(Loss\) and 'loss' \(\w+\) both report \['loss'\].*Remove"):
        trial.run(1)


def test_names_from_the_registry_that_mean_the_same_metric_merge_silently():
    trial = _trial(metrics=["acc", "cat_acc"])  # documented: both report 'acc'
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = trial.run(1)
    assert "acc" in history[0]


# ------------------------------------------------------------------------------------------- callbacks
def test_callback_that_is_not_a_callback_is_refused():
    with pytest.raises(ConfigurationTypeError, match=r"is not a torchbearer Callback.*@torchbearer\.callbacks"):
        Trial(nn.Linear(4, 3), callbacks=[lambda state: None])


def test_callbacks_not_in_a_list_suggest_a_list():
    with pytest.raises(ConfigurationTypeError, match=r"got a single EarlyStopping.*callbacks=\[EarlyStopping"):
        Trial(nn.Linear(4, 3), callbacks=EarlyStopping())


def test_callback_class_instead_of_an_instance_suggests_instantiating_it():
    with pytest.raises(ConfigurationTypeError, match=r"EarlyStopping is a class.*callbacks=\[EarlyStopping\(\)\]"):
        Trial(nn.Linear(4, 3), callbacks=[EarlyStopping])


def test_misspelt_state_key_in_a_callback_is_the_plain_key_error():
    @torchbearer.callbacks.on_step_training
    def read_typo(state):
        return state[torchbearer.state_key("y_perd")]

    with pytest.raises(KeyError, match="y_perd") as caught:
        _trial(callbacks=[read_typo]).run(1)
    assert not isinstance(caught.value, TorchbearerError)  # the user's own error, not wrapped


# ------------------------------------------------------------------------------------------- constructor arguments
def test_optimizer_holding_none_of_the_models_parameters_warns():
    old_model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(old_model.parameters(), lr=0.1)
    with pytest.warns(TorchbearerWarning, match=r"SGD holds none of the parameters of the model Linear.*SGD\(model"):
        Trial(nn.Linear(4, 3), optimizer, nn.CrossEntropyLoss())


def test_optimizer_over_part_of_the_model_or_no_model_does_not_warn():
    generator, discriminator = nn.Linear(2, 4), nn.Linear(4, 1)
    gan = nn.Sequential(generator, discriminator)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trial(gan, torch.optim.Adam(generator.parameters()))  # one of several optimizers of a GAN
        Trial(gan)  # MockOptimizer
        Trial(None, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))  # differentiable programming
        Trial(lambda x: x, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))  # a plain function


def test_criterion_given_in_the_optimizers_place_names_the_argument_order():
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigurationTypeError, match=r"CrossEntropyLoss is not an optimizer.*Trial\(model, optimizer"):
        Trial(model, nn.CrossEntropyLoss(), optimizer)


def test_optimizer_given_as_the_model_names_the_argument_order():
    optimizer = torch.optim.SGD(nn.Linear(4, 3).parameters(), lr=0.1)
    with pytest.raises(ConfigurationTypeError, match=r"model is the optimizer SGD.*Trial\(model, optimizer"):
        Trial(optimizer, nn.CrossEntropyLoss())


def test_optimizer_class_instead_of_an_instance_suggests_building_it():
    with pytest.raises(ConfigurationTypeError, match=r"optimizer SGD is a class.*SGD\(model\.parameters\(\)"):
        Trial(nn.Linear(4, 3), torch.optim.SGD)


def test_loss_class_instead_of_an_instance_suggests_instantiating_it():
    with pytest.raises(ConfigurationTypeError, match=r"criterion MSELoss is a class.*criterion=MSELoss\(\)"):
        Trial(nn.Linear(4, 3), None, nn.MSELoss)


def test_criterion_that_is_not_callable_is_refused():
    with pytest.raises(ConfigurationTypeError, match=r"criterion 'mse' of type str is not callable.*Loss\(\)"):
        Trial(nn.Linear(4, 3), None, "mse")


def test_model_class_instead_of_an_instance_suggests_instantiating_it():
    with pytest.raises(ConfigurationTypeError, match=r"model Linear is a class.*Trial\(Linear\(\.\.\.\)"):
        Trial(nn.Linear)


def test_verbose_that_is_not_an_int_lists_the_levels():
    with pytest.raises(ConfigurationTypeError, match=r"verbose must be an int, got '2'.*0 for silence"):
        Trial(nn.Linear(4, 3), verbose="2")


# ------------------------------------------------------------------------------------------- builder arguments
def test_accumulation_over_zero_batches_is_refused():
    with pytest.raises(ConfigurationError, match=r"positive int number of batches, got 0"):
        _trial().with_accumulation(0)


def test_unknown_precision_lists_the_choices():
    with pytest.raises(ValueError, match=r"precision 'fp8' is unknown; use one of 'fp32', 'bf16', 'fp16'"):
        _trial().with_precision("fp8")


def test_compiling_a_plain_function_is_refused():
    with pytest.raises(ConfigurationError, match=r"with_compile needs an nn.Module model, got function"):
        Trial(lambda x: x).with_compile()


def test_batch_loader_that_is_not_callable_is_refused():
    with pytest.raises(ConfigurationTypeError, match=r"with_loader needs a function batch_loader\(state\)"):
        _trial().with_loader("standard")


def test_closure_that_is_not_callable_is_refused():
    with pytest.raises(ConfigurationTypeError, match=r"with_closure needs a function closure\(state\)"):
        _trial().with_closure(None)


# ------------------------------------------------------------------------------------------- runs that train nothing
def _untrained(optimizer: bool = True, criterion=None, callbacks=()) -> Trial:
    """A Linear(4, 1) regression Trial on 8 samples in batches of 2, with or without an optimizer."""
    model = nn.Linear(4, 1)
    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1) if optimizer else None, criterion,
                  metrics=["loss"], callbacks=list(callbacks), verbose=0)  # fmt: skip
    return trial.with_train_data(torch.randn(8, 4), torch.randn(8, 1), batch_size=2)


def test_training_without_an_optimizer_warns_that_the_weights_stay_unchanged():
    trial = _untrained(optimizer=False, criterion=nn.MSELoss())
    weight = trial.state[torchbearer.MODEL].weight.clone()
    with pytest.warns(TorchbearerWarning, match=r"no optimizer.*Linear.*unchanged.*torch\.optim\.SGD\(model") as caught:
        trial.run(1)
    assert torch.equal(trial.state[torchbearer.MODEL].weight, weight)
    assert [warning.filename for warning in caught] == [__file__]


def test_training_without_a_criterion_or_a_loss_term_warns_that_the_loss_is_zero():
    trial = _untrained()
    with pytest.warns(TorchbearerWarning, match=r"loss stayed 0.*no criterion.*nn\.MSELoss\(\).*add_to_loss") as caught:
        history = trial.run(2)
    assert history[0]["loss"] == 0.0
    assert [warning.filename for warning in caught] == [__file__]  # once, at the end of the first pass


def _add_in_place(state):
    state[torchbearer.LOSS] += state[torchbearer.Y_PRED].pow(2).mean()


def _add_on_odd_batches(state):
    if state[torchbearer.BATCH] % 2 == 0:
        state[torchbearer.LOSS] = state[torchbearer.LOSS] + state[torchbearer.Y_PRED].pow(2).mean()


@pytest.mark.parametrize(
    "adds_to_loss",
    [
        torchbearer.callbacks.add_to_loss(lambda state: state[torchbearer.Y_PRED].pow(2).mean()),
        torchbearer.callbacks.on_criterion(_add_in_place),  # the paper's listing 1
        torchbearer.callbacks.on_criterion(_add_on_odd_batches),  # not on the pass's last batch
    ],
    ids=["add_to_loss", "in_place", "some_batches"],
)
def test_a_loss_built_by_callbacks_without_a_criterion_does_not_warn(adds_to_loss):
    trial = _untrained(callbacks=[adds_to_loss])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = trial.run(1)
    assert history[0]["loss"] > 0


def test_running_no_model_without_optimizer_or_criterion_does_not_warn():
    trial = Trial(lambda x: x, verbose=0).with_train_data(torch.randn(4, 1), torch.randn(4, 1), batch_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trial.run(1)


def test_run_with_a_negative_epoch_count_is_refused():
    with pytest.raises(ConfigurationError, match=r"run\(epochs=-1\).*epoch to train up to.*EarlyStopping"):
        _trial().run(epochs=-1)


def test_run_to_an_epoch_already_reached_says_how_to_train_more():
    trial = _trial()
    trial.run(3)
    with pytest.warns(TorchbearerWarning, match=r"already trained 3 epochs; run\(epochs=6\) trains 3 more") as caught:
        assert len(trial.run(3)) == 3
    assert [warning.filename for warning in caught] == [__file__]
    with pytest.warns(TorchbearerWarning, match=r"run\(epochs=2\).*already trained 3 epochs; run\(epochs=5\)"):
        trial.run(epochs=2)


# ------------------------------------------------------------------------------------------- evaluate and predict
def test_predict_without_test_data_warns_once_and_returns_an_empty_list():
    trial = _trial()
    with pytest.warns(TorchbearerWarning, match=r"predict\(\) has no test data.*with_test_data / with_test_generator"):
        assert trial.predict() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert trial.predict() == []


def test_evaluate_without_validation_data_warns_once_and_returns_an_empty_dict():
    trial = _trial()
    with pytest.warns(TorchbearerWarning, match=r"evaluate\(\) has no validation data.*with_val_data"):
        assert trial.evaluate() == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert trial.evaluate() == {}


def test_evaluate_with_an_unknown_data_key_lists_the_keys():
    with pytest.raises(ConfigurationError, match=r"data_key 'val' is not a data set.*torchbearer\.VALIDATION_DATA"):
        _trial().evaluate(data_key="val")


# ------------------------------------------------------------------------------------------- persistence
def test_loading_another_models_trial_state_names_missing_and_unexpected_keys():
    saved = _trial(model=nn.Sequential(nn.Linear(4, 3))).state_dict()
    with pytest.raises(StateDictError, match=r"missing keys \['bias', 'weight'\], unexpected keys \['0\.bias'"):
        _trial().load_state_dict(saved)


def test_loading_another_models_weights_directly_suggests_strict_false():
    with pytest.warns(UserWarning, match="Not a torchbearer state dict"):
        with pytest.raises(StateDictError, match=r"missing keys \['bias', 'weight'\].*strict=False"):
            _trial().load_state_dict({"other.weight": torch.zeros(3, 4)})


def test_loading_weights_of_other_shapes_opens_with_the_size_mismatch():
    saved = _trial(model=nn.Linear(4, 2)).state_dict()
    with pytest.raises(StateDictError) as caught:
        _trial().load_state_dict(saved)
    message = str(caught.value)
    assert message.startswith(
        "the state dict does not fit the model Linear: size mismatch for weight: (2, 4) in the state dict, (3, 4) in "
        "the model; size mismatch for bias: (2,) in the state dict, (3,) in the model. Load a checkpoint saved from "
        "the same architecture"
    )
    assert "missing keys" not in message and "unexpected keys" not in message


# ------------------------------------------------------------------------------------------- NaN loss
def _nan_criterion(y_pred, y_true):
    return (y_pred * float("nan")).sum()


def test_nan_loss_without_terminate_on_nan_warns_once_per_run():
    trial = _trial(criterion=_nan_criterion, metrics=["loss"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trial.run(3)
        trial.run(4)
    messages = [str(w.message) for w in caught if issubclass(w.category, TorchbearerWarning)]
    assert len(messages) == 2  # one per run, not per epoch
    assert "loss is not finite at the end of the training pass of epoch 0" in messages[0]
    assert "TerminateOnNaN()" in messages[0]


def test_nan_loss_with_terminate_on_nan_stops_without_the_warning():
    trial = _trial(criterion=_nan_criterion, metrics=["loss"], callbacks=[TerminateOnNaN()])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert trial.run(3) == []


# ------------------------------------------------------------------------------------------- documented, not misuse
def test_steps_larger_than_the_loader_cycle_through_it_without_a_warning():
    trial = _trial().with_train_generator(_batches((torch.randn(2, 4), torch.zeros(2, dtype=torch.long))), steps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = trial.run(1)
    assert history[0]["train_steps"] == 5


def test_accuracy_of_a_model_returning_a_tuple_is_a_metric_error_describing_the_tuple():
    loss = nn.CrossEntropyLoss()
    trial = _trial(_TwoOutputs(), lambda output0, output1, y_true: loss(output0, y_true), metrics=["acc"])
    with pytest.raises(MetricError, match=r"'acc'.*tuple of \[tensor of shape \(4, 3\)"):
        trial.run(1)
