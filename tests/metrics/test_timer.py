import torch
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.metrics import MetricList, timer
from torchbearer.metrics.timer import TimerMetric


def timed_trial(timer_metric, callbacks=()):
    model = nn.Linear(4, 2)
    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                  metrics=["loss", timer_metric], callbacks=list(callbacks), verbose=0)  # fmt: skip
    x, y = torch.randn(12, 4), torch.randint(0, 2, (12,))
    return trial.with_train_data(x, y, batch_size=4, num_workers=0).with_val_data(x, y, batch_size=4, num_workers=0)


def test_timer_constants_keep_their_0_5_values():
    assert timer.ON_FORWARD_VALIDATION == "on_forward_validaiton"
    assert (timer.TRAIN_TIME, timer.TOTAL_TIME, timer.VALIDATION_TIME) == ("train_time", "total_time",
                                                                            "validation_time")  # fmt: skip


def test_timer_adds_itself_to_the_callbacks_once_and_records_every_phase(capsys):
    timer_metric = TimerMetric()
    trial = timed_trial(timer_metric)
    trial.run(2)
    assert [callback for callback in trial.state[torchbearer.CALLBACK_LIST] if callback is timer_metric] == [
        timer_metric
    ]
    timings = timer_metric.get_timings()
    expected = {timer.ON_SAMPLE, timer.ON_FORWARD, timer.ON_CRITERION, timer.ON_BACKWARD, timer.ON_STEP_TRAINING,
                timer.ON_START_TRAINING, timer.ON_START_EPOCH, timer.ON_START_VALIDATION, timer.ON_SAMPLE_VALIDATION,
                timer.ON_FORWARD_VALIDATION, timer.ON_CRITERION_VALIDATION, timer.ON_STEP_VALIDATION,
                timer.TRAIN_TIME, timer.VALIDATION_TIME, timer.TOTAL_TIME}  # fmt: skip
    assert set(timings) == expected
    assert all(value >= 0 for value in timings.values())
    assert timings[timer.TOTAL_TIME] >= timings[timer.TRAIN_TIME] + timings[timer.VALIDATION_TIME]
    assert str(timings[timer.TOTAL_TIME]) in capsys.readouterr().out


def test_timer_reports_chosen_keys_per_batch_under_either_spelling():
    timer_metric = TimerMetric(time_keys=(timer.ON_FORWARD, "on_forward_validation", timer.TRAIN_TIME))
    seen = []

    class Record(torchbearer.Callback):
        def on_step_training(self, state):
            seen.append(set(state[torchbearer.METRICS]))

    trial = timed_trial(timer_metric, callbacks=[Record()])
    history = trial.run(2)
    assert seen[-1] == {"running_loss", timer.ON_FORWARD, "on_forward_validation", timer.TRAIN_TIME}
    assert isinstance(history[-1][timer.ON_FORWARD], float)


def test_timer_writes_timings_into_the_state():
    timer_metric = TimerMetric()
    state = {}
    timer_metric.on_start(state)
    timer_metric.on_sample(state)
    assert state[torchbearer.TIMINGS] is timer_metric.get_timings()
    assert timer.ON_SAMPLE in state[torchbearer.TIMINGS]


def test_timer_is_a_metric_named_timer():
    assert str(MetricList([TimerMetric()])) == "['timer']"
