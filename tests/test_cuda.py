"""On a real GPU: mixed precision, torch.compile, accumulation, pinned transfers and GPU checkpoints.

The CPU versions of these tests are in ``test_precision.py``; here the same features run through
CUDA's own autocast, GradScaler and inductor/Triton. Skipped without a CUDA device.
"""

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import on_backward, on_forward
from torchbearer.io import atomic_save, safe_load

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _regression_data(samples=64):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 4, generator=generator)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))


def _trial(model, lr=0.05, callbacks=()):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return Trial(model, optimizer, nn.MSELoss(), ["loss"], list(callbacks), verbose=0)


def _record_forward_dtypes(dtypes):
    @on_forward
    def record(state):
        dtypes.add(state[torchbearer.Y_PRED].dtype)

    return record


@pytest.mark.parametrize("precision, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_mixed_precision_autocasts_on_the_gpu_and_trains(precision, dtype):
    dtypes = set()
    x, y = _regression_data()
    trial = _trial(_mlp(), callbacks=[_record_forward_dtypes(dtypes)]).to("cuda").with_precision(precision)
    history = trial.with_train_data(x, y, batch_size=16, num_workers=0).run(10)
    assert dtypes == {dtype}
    assert history[-1]["loss"] < history[0]["loss"] * 0.5


def test_fp16_chosen_before_moving_to_the_gpu_scales_on_the_gpu():
    x, y = _regression_data()
    trial = _trial(_mlp()).with_precision("fp16").to("cuda")
    scaler = trial.state[torchbearer.GRAD_SCALER]
    assert scaler._device == "cuda"
    history = trial.with_train_data(x, y, batch_size=16, num_workers=0).run(5)
    assert history[-1]["loss"] < history[0]["loss"]
    assert trial.state_dict()["grad_scaler"]["scale"] == scaler.get_scale()


def test_fp16_skips_an_overflowing_step_on_the_gpu_and_lowers_the_scale():
    model = _mlp().cuda()

    @on_backward
    def poison(state):
        model[0].weight.grad.fill_(float("inf"))

    x, y = _regression_data(16)
    trial = _trial(model, callbacks=[poison]).to("cuda").with_precision("fp16")
    before = model[0].weight.detach().clone()
    scale_before = trial.state[torchbearer.GRAD_SCALER].get_scale()
    trial.with_train_data(x, y, batch_size=16, num_workers=0).run(1)
    assert torch.equal(model[0].weight, before)
    assert trial.state[torchbearer.GRAD_SCALER].get_scale() < scale_before


def test_compiled_model_trains_on_the_gpu_and_saves_plain_keys(tmp_path):
    model = _mlp()
    x, y = _regression_data()
    trial = _trial(model).to("cuda").with_compile().with_train_data(x, y, batch_size=16, num_workers=0)
    history = trial.run(5)
    assert history[-1]["loss"] < history[0]["loss"]
    path = tmp_path / "compiled.pt"
    atomic_save(trial.state_dict(), path)
    plain = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    plain.load_state_dict(safe_load(path, map_location="cpu")["model"])
    assert torch.equal(plain[0].weight, model[0].weight.cpu())


def test_accumulation_on_the_gpu_equals_one_step_over_the_concatenated_batch():
    x, y = _regression_data(32)
    accumulated, whole = _mlp(), _mlp()
    _trial(accumulated).to("cuda").with_accumulation(4).with_train_data(
        x, y, batch_size=2, shuffle=False, num_workers=0
    ).run(3)
    _trial(whole).to("cuda").with_train_data(x, y, batch_size=8, shuffle=False, num_workers=0).run(3)
    for mine, reference in zip(accumulated.parameters(), whole.parameters()):
        assert torch.allclose(mine, reference, atol=1e-6)


def test_pinned_loader_batches_arrive_on_the_gpu_and_train_like_the_cpu():
    x, y = _regression_data()
    seen = []

    @on_forward
    def record(state):
        seen.append(state[torchbearer.X].device.type)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, pin_memory=True)
    on_gpu = _trial(_mlp(), callbacks=[record]).to("cuda").with_train_generator(loader).run(3)
    on_cpu = _trial(_mlp()).with_train_generator(loader).run(3)
    assert set(seen) == {"cuda"}
    assert on_gpu[-1]["loss"] == pytest.approx(on_cpu[-1]["loss"], rel=1e-4)


def test_a_gpu_checkpoint_resumes_in_a_cpu_trial(tmp_path):
    x, y = _regression_data()
    gpu = _trial(_mlp()).to("cuda").with_train_data(x, y, batch_size=16, num_workers=0)
    gpu.run(2)
    path = tmp_path / "gpu.pt"
    atomic_save(gpu.state_dict(), path)
    cpu = _trial(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1)))
    cpu.load_state_dict(safe_load(path, map_location="cpu"))
    cpu.with_test_generator(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=16))
    gpu.with_test_generator(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=16))
    assert torch.allclose(cpu.predict(), gpu.predict().cpu(), atol=1e-5)
    assert len(cpu.state[torchbearer.HISTORY]) == 2


def test_reduce_overhead_runs_the_step_in_cuda_graphs_without_syncs_and_matches_eager():
    from torch._dynamo.utils import counters

    from torchbearer.callbacks import on_start_training, on_step_training

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 32, generator=generator), torch.randint(0, 10, (200,), generator=generator)
    batches = [(x[i : i + 64].cuda(), y[i : i + 64].cuda()) for i in range(0, 200, 64)]  # the last one has 8
    armed = [False]  # epochs after the first: any synchronising call inside a training pass raises

    @on_start_training
    def strict(state):
        if armed[0]:
            torch.cuda.set_sync_debug_mode("error")

    @on_step_training
    def relax_after_last(state):
        if state[torchbearer.BATCH] == len(batches) - 1:
            torch.cuda.set_sync_debug_mode("default")  # the one end-of-pass transfer comes next

    def trial(callbacks=(), **compile_kwargs):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        trial = Trial(model, optimizer, nn.CrossEntropyLoss(), ["acc", "loss"], list(callbacks), verbose=0)
        trial.with_train_generator(batches).to("cuda")
        return trial.with_compile(**compile_kwargs) if compile_kwargs else trial

    eager = trial().run(3)
    compiled = trial([strict, relax_after_last], mode="reduce-overhead")
    try:
        compiled.run(1)
        armed[0] = True
        graphs, skips = counters["stats"]["unique_graphs"], counters["inductor"]["cudagraph_skips"]
        history = compiled.run(3)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert counters["stats"]["unique_graphs"] == graphs  # nothing compiled after the first epoch
    assert counters["inductor"]["cudagraph_skips"] == skips == 0  # every compiled graph ran as a CUDA graph
    assert compiled._compilation.region is not None and compiled._compilation.region.failure is None
    assert [record["loss"] for record in history] == pytest.approx([record["loss"] for record in eager], rel=1e-3)
