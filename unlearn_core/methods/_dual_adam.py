"""AdamW with one set of moments (and bias-correction counter) per training phase.

DualOptim (Zhong et al. 2025, arXiv 2504.15827) keeps decoupled Adam states for forget and retain
steps; TAU uses it so that its task-vector phase starts from fresh moments, as DUSK's separate run
does. The phase of optimizer step s (0-based, = batch["step"] of the loss that produced the
gradients) is `phase_of(s)`; the learning rate is the scheduled lr times `lr_ratios[phase]`.
The loop passes the parameters in two groups, biases and norm weights with weight_decay 0
(unlearn_core.steps.decay_groups); each group counts its steps, in step with the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch


class PhasedAdamW(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        weight_decay: float,
        phase_of: Callable[[int], int],
        lr_ratios: Sequence[float],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "betas": betas,
            "eps": eps,
            "n_steps": 0,
        }
        super().__init__(params, defaults)
        self.phase_of = phase_of
        self.lr_ratios = tuple(lr_ratios)

    @torch.no_grad()
    def step(self, closure: Callable | None = None) -> None:
        assert closure is None, "PhasedAdamW takes no closure"
        for group in self.param_groups:
            k = self.phase_of(group["n_steps"])
            group["n_steps"] += 1
            lr = group["lr"] * self.lr_ratios[k]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if f"t{k}" not in state:
                    state[f"t{k}"] = 0
                    state[f"exp_avg{k}"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state[f"exp_avg_sq{k}"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
                state[f"t{k}"] += 1
                t = state[f"t{k}"]
                m, v = state[f"exp_avg{k}"], state[f"exp_avg_sq{k}"]
                p.mul_(1 - lr * group["weight_decay"])  # decoupled decay (AdamW)
                m.lerp_(p.grad, 1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (v / (1 - beta2**t)).sqrt_().add_(group["eps"])
                p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))
