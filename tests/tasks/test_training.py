"""The training utilities of seed 003, each checked on a tiny model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.tasks.conftest import NO_TORCH

torch = pytest.importorskip("torch", reason=NO_TORCH)
pytest.importorskip("torchaudio", reason=NO_TORCH)
nn = torch.nn

from tasks import loaders  # noqa: E402
from tasks.seeding import seed_everything  # noqa: E402
from tasks.training import Checkpointed, TrainConfig, autocast, fit, make_scaler, stream_indices  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def regression(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 8, generator=gen)
    return x, x @ torch.randn(8, 1, generator=gen) + 0.01 * torch.randn(256, 1, generator=gen)


def train(
    cfg: TrainConfig, ckpt: Path | None = None, **kw: object
) -> tuple[nn.Module, list[float]]:
    torch.manual_seed(0)
    x, y = regression()
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1))

    def loss_fn(m: nn.Module, idx: np.ndarray) -> torch.Tensor:
        return nn.functional.mse_loss(m(x[idx]), y[idx])

    result = fit(model, loss_fn, len(x), cfg, "cpu", ckpt, **kw)  # type: ignore[arg-type]
    return model, result.losses


def test_loss_falls() -> None:
    _, losses = train(TrainConfig(steps=60, batch_size=16, lr=1e-2))
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:5])


def test_bf16_autocast_on_cpu_trains_and_needs_no_scaler() -> None:
    with autocast("cpu", True):
        out = nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16
    assert not make_scaler("cpu", True).is_enabled()
    _, losses = train(TrainConfig(steps=60, batch_size=16, lr=1e-2, mixed_precision=True))
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_autocast_on_cuda_uses_a_grad_scaler() -> None:
    assert make_scaler("cuda", True).is_enabled()
    with autocast("cuda", True):
        out = nn.Linear(4, 4).cuda()(torch.randn(2, 4, device="cuda"))
    assert out.dtype == torch.float16


def test_accumulation_split_sees_the_same_samples() -> None:
    # What an OOM retry does: batch 32 x 1 → 16 x 2 → 8 x 4, same effective batch.
    whole = stream_indices(100, 5, 3 * 32, 32)
    halves = np.concatenate([stream_indices(100, 5, 3 * 32 + k * 16, 16) for k in range(2)])
    assert np.array_equal(whole, halves)
    cfgs = [
        TrainConfig(steps=5, batch_size=32 // a, accumulation_steps=a, grad_clip=0) for a in (1, 4)
    ]
    models = [train(cfg)[0] for cfg in cfgs]
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_gradient_checkpointing_keeps_gradients_and_saves_fewer_activations() -> None:
    def grads_and_saved(enabled: bool) -> tuple[list[torch.Tensor], int]:
        torch.manual_seed(0)
        block = nn.Sequential(*[nn.Sequential(nn.Linear(32, 32), nn.Tanh()) for _ in range(4)])
        model = nn.Sequential(*[Checkpointed(b, enabled) for b in block])
        saved = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal saved
            saved += 1
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model(torch.randn(8, 32, generator=torch.Generator().manual_seed(1))).sum()
        loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None], saved

    plain, saved_plain = grads_and_saved(False)
    ckpt, saved_ckpt = grads_and_saved(True)
    assert all(torch.allclose(a, b) for a, b in zip(plain, ckpt, strict=True))
    assert saved_ckpt < saved_plain


def test_memory_is_pinned_only_for_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    data = [torch.zeros(2)] * 4
    assert not loaders.should_pin("cpu")
    assert not loaders.make_loader(data, 2, "cpu").pin_memory
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loaders.should_pin("cuda")
    assert loaders.make_loader(data, 2, "cuda").pin_memory
    assert not loaders.make_loader(data, 2, "cpu").pin_memory


def test_seeding_makes_runs_identical() -> None:
    def draw() -> tuple[float, float, torch.Tensor]:
        seed_everything(7)
        return float(np.random.rand()), float(torch.rand(1)), nn.Linear(3, 3).weight.detach()

    one, two = draw(), draw()
    assert one[:2] == two[:2] and torch.equal(one[2], two[2])


KILLED_RUN = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from tests.tasks.test_training import train, TrainConfig

def die(step, loss):
    if step == 7:
        os.kill(os.getpid(), signal.SIGKILL)

train(TrainConfig(steps=12, batch_size=16, checkpoint_every=3), Path(sys.argv[1]), on_step=die)
"""


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    script = tmp_path / "killed.py"
    script.write_text(KILLED_RUN.format(tests=str(REPO)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "ckpt")], env=env, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL
    cfg = TrainConfig(steps=12, batch_size=16, checkpoint_every=3)
    steps: list[int] = []
    resumed, _ = train(cfg, tmp_path / "ckpt", on_step=lambda s, _loss: steps.append(s))
    assert steps == list(range(7, 13))  # from the checkpoint at step 6, not from 0
    uninterrupted, _ = train(cfg, tmp_path / "fresh")
    for a, b in zip(resumed.parameters(), uninterrupted.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
