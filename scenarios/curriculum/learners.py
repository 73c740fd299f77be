"""Continual learners in PyTorch, class-incremental and single pass, as the authors ran them with Avalanche
(`paradigm-I.py`: Naive, EWC with mode="separate", LwF; Adam, lr 1e-3, one epoch per task, one output head over
every class). Avalanche 0.6 needs torchvision, whose only build for torch 2.13 does not load beside its CPU
build, so the three strategies are written here, following Avalanche's definitions:

- naive: fine-tune on each task in turn;
- EWC: after task t, importance F_t = the empirical Fisher information (the mean over the task's samples of each
  sample's squared loss gradient; Avalanche squares minibatch gradients, about F_t / batch size) and the
  parameters θ_t are kept; later tasks add λ · Σ_t Σ F_t (θ − θ_t)² to the loss;
- LwF: the model after the previous task is the teacher; later tasks add α_t · KL(softmax(old/T) || softmax(new/T))
  over the units of the classes seen so far (α_t growing with the task as the authors' [0, 0.5, 1.333, 2.25, 3.2]).

The defaults are not the authors' where those leave nothing to compare on a small MLP over digits: at lr 1e-3
thirty steps of a new task drove the first task's accuracy to 0 in all 32 orders of the default run for every
strategy, so Δ was the same for all three; at the authors' λ = 0.4 (and their smaller F) the penalty was under a
thousandth of the loss, so EWC was naive fine-tuning. At lr 3e-4 every task is still learnt (0.73-1.0 right
after it) and how much of the first task survives depends on the order and the strategy: over the default run's
32 orders mean Δ is 0.76 naive, 0.35 EWC (λ = 100) and 0.19 LwF (α five times the authors').

Metrics, as the authors' log parser takes them: after each task, the test accuracy of the first task and the mean
test accuracy over the tasks seen so far; A = that mean after the last task, Δ = first-task accuracy right after
learning it minus at the end, and the authors' ranking score F = 2A / (ΔA + 1).

PyTorch is the optional extra `schola[curriculum]`, imported only when a learner is built.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from schola.errors import ConfigError

Strategy = Literal["naive", "ewc", "lwf"]
LWF_ALPHA = [0.0, 2.5, 6.665, 11.25, 16.0]  # five times the authors' [0, 0.5, 1.333, 2.25, 3.2]


def require_torch() -> Any:
    """torch, or a ConfigError saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ConfigError(
            "the curriculum learners need PyTorch, an optional extra: pip install 'schola[curriculum]'",
            key="scenario.roles",
        ) from None
    return torch


class Hyper(BaseModel):
    """A learner's strategy and hyper-parameters: the authors' where they carry over to a small MLP on small
    data (Adam, a single pass, T); a smaller minibatch than their 64, so a task of ~250 digits still gives some
    thirty steps, and a smaller lr, λ and α tuned so the strategies differ (see the module's docstring)."""

    strategy: Strategy = Field("naive", description="naive, ewc or lwf")
    hidden: int = Field(128, ge=1, description="hidden units of the MLP")
    lr: float = Field(3e-4, gt=0, description="Adam learning rate (authors: 1e-3, which forgets everything here)")
    batch_size: int = Field(8, ge=1, description="minibatch size (authors: 64)")
    epochs: int = Field(1, ge=1, description="passes over each task (authors: 1, a single pass)")
    ewc_lambda: float = Field(100.0, ge=0, description="EWC penalty weight (authors: 0.4, with a smaller F)")
    lwf_alpha: list[float] = Field(default_factory=lambda: list(LWF_ALPHA), description="LwF weight by task")
    lwf_temperature: float = Field(1.0, gt=0, description="LwF distillation temperature (authors: 1)")


def build_model(inputs: int, classes: int, *, hidden: int, seed: int) -> Any:
    """A one-hidden-layer MLP, initialised from `seed` alone (PyTorch's default init, drawn from a generator)."""
    torch = require_torch()
    model = torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in (model[0], model[2]):
            torch.nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=g)
            bound = 1 / math.sqrt(layer.in_features)
            layer.bias.uniform_(-bound, bound, generator=g)
    return model


def ewc_penalty(model: Any, importances: list[tuple[dict[str, Any], dict[str, Any]]]) -> Any:
    """Σ over earlier tasks of Σ F_t (θ − θ_t)², Avalanche's EWC in mode "separate" (the caller applies λ)."""
    torch = require_torch()
    total = torch.zeros(())
    for fisher, anchor in importances:
        for name, p in model.named_parameters():
            total = total + (fisher[name] * (p - anchor[name]) ** 2).sum()
    return total


def distillation_loss(out: Any, previous: Any, units: Sequence[int], temperature: float) -> Any:
    """KL(softmax(previous/T) || softmax(out/T)) over the old classes' units, batch mean (Avalanche's LwF)."""
    torch = require_torch()
    au = list(units)
    log_p = torch.log_softmax(out[:, au] / temperature, dim=1)
    q = torch.softmax(previous[:, au] / temperature, dim=1)
    return torch.nn.functional.kl_div(log_p, q, reduction="batchmean")


def fisher_importance(model: Any, x: Any, y: Any) -> dict[str, Any]:
    """The empirical Fisher information of each parameter: the mean over samples of the squared gradient of the
    sample's cross-entropy (EWC's F). Avalanche squares minibatch gradients instead, which divides F by about the
    batch size at a minimum of the loss (where the per-sample gradients cancel), so λ meant less the larger the
    minibatch: at its 0.4 the penalty was a ten-thousandth of the loss and EWC was naive fine-tuning."""
    torch = require_torch()
    from torch.func import functional_call, grad, vmap

    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss(p: dict[str, Any], xi: Any, yi: Any) -> Any:
        out = functional_call(model, p, (xi.unsqueeze(0),))
        return torch.nn.functional.cross_entropy(out, yi.unsqueeze(0))

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)  # one gradient per sample
    return {n: (g**2).mean(dim=0) for n, g in grads.items()}


class IncrementalLearner:
    """One continual learner on one order of tasks.

    Args:
        hyper: strategy and hyper-parameters.
        classes: the number of output units (every class of the dataset, from the start).
        inputs: the number of features.
        seed: the initial weights' seed; the same for every order, so orders are compared from one start.
    """

    def __init__(self, hyper: Hyper, *, inputs: int, classes: int, seed: int) -> None:
        torch = require_torch()
        self.torch, self.hyper, self.seed = torch, hyper, seed
        self.model = build_model(inputs, classes, hidden=hyper.hidden, seed=seed)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=hyper.lr)
        self.importances: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.teacher: Any = None
        self.seen: list[int] = []
        self.tasks_done = 0

    def loss(self, x: Any, y: Any) -> Any:
        torch, h = self.torch, self.hyper
        out = self.model(x)
        loss = torch.nn.functional.cross_entropy(out, y)
        if h.strategy == "ewc" and self.importances:
            loss = loss + h.ewc_lambda * ewc_penalty(self.model, self.importances)
        if h.strategy == "lwf" and self.teacher is not None:
            alpha = h.lwf_alpha[min(self.tasks_done, len(h.lwf_alpha) - 1)]
            with torch.no_grad():
                previous = self.teacher(x)
            loss = loss + alpha * distillation_loss(out, previous, self.seen, h.lwf_temperature)
        return loss

    def learn(self, x: Any, y: Any, *, task_seed: int) -> None:
        """One task: `epochs` passes over shuffled minibatches, then what the strategy keeps for later tasks."""
        torch, h = self.torch, self.hyper
        g = torch.Generator().manual_seed(task_seed)
        self.model.train()
        for _ in range(h.epochs):
            for idx in torch.randperm(len(x), generator=g).split(h.batch_size):
                self.optimizer.zero_grad()
                self.loss(x[idx], y[idx]).backward()
                self.optimizer.step()
        if h.strategy == "ewc":
            self.model.eval()
            fisher = fisher_importance(self.model, x, y)
            anchor = {n: p.detach().clone() for n, p in self.model.named_parameters()}
            self.importances.append((fisher, anchor))
        if h.strategy == "lwf":
            self.teacher = copy.deepcopy(self.model).eval()
        self.seen = sorted(set(self.seen) | {int(c) for c in y.unique()})
        self.tasks_done += 1

    def accuracy(self, x: Any, y: Any) -> float:
        self.model.eval()
        with self.torch.no_grad():
            return float((self.model(x).argmax(dim=1) == y).float().mean())


def run_order(split: Any, order: Sequence[int], hyper: Hyper, *, seed: int, runs: int = 1) -> dict[str, Any]:
    """Learn the tasks in `order`, `runs` times from different initial weights; the mean accuracy curves and
    the mean A, Δ and F."""
    torch = require_torch()

    def tensors(x: np.ndarray, y: np.ndarray, task: Sequence[int]) -> tuple[Any, Any]:
        mask = np.isin(y, list(task))
        return torch.as_tensor(x[mask], dtype=torch.float32), torch.as_tensor(y[mask], dtype=torch.long)

    train = [tensors(split.x_train, split.y_train, split.tasks[t]) for t in order]
    test = [tensors(split.x_test, split.y_test, split.tasks[t]) for t in order]
    curves = []
    for run in range(runs):
        run_seed = seed * 1_000 + run
        learner = IncrementalLearner(hyper, inputs=split.x_train.shape[1], classes=len(split.classes), seed=run_seed)
        first, average = [], []
        for step, (task, (x, y)) in enumerate(zip(order, train)):
            learner.learn(x, y, task_seed=run_seed * 1_000 + task)  # a task sees the same batches in every order
            accuracies = [learner.accuracy(*test[i]) for i in range(step + 1)]
            first.append(accuracies[0])
            average.append(sum(accuracies) / len(accuracies))
        curves.append((first, average))
    first = np.mean([c[0] for c in curves], axis=0).tolist()
    average = np.mean([c[1] for c in curves], axis=0).tolist()
    scores = [(c[1][-1], c[0][0] - c[0][-1]) for c in curves]
    a = float(np.mean([s[0] for s in scores]))
    delta = float(np.mean([s[1] for s in scores]))
    f = float(np.mean([2 * s[0] / (s[1] * s[0] + 1) for s in scores]))
    return {"A": a, "delta": delta, "F": f, "first_task": first, "average": average}
