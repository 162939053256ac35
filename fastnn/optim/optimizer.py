"""Optimizers with PyTorch's exact update rules, stepping whole flat buffers at once.

An optimizer keeps its parameters in groups (as torch.optim) and, per group, the spans of
flat buffer those parameters cover (`contiguous_runs`). For a Sequential that is one span,
so `step()` is one backend kernel call per group; state buffers (momentum, Adam moments)
are flat too. `state_dict()` presents that state per parameter, keyed as PyTorch keys it.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastnn import _core
from fastnn.backends import ops
from fastnn.layers.base import state_array
from fastnn.parameter import contiguous_runs, layout_key, unique_parameters


def _number(value, name: str, who: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{who}: {name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{who}: {name} must be finite, got {value}")
    return value


def _at_least(value, name, who, low=0.0):
    v = _number(value, name, who)
    if v < low:
        raise ValueError(f"{who}: invalid {name} {v}; it must be >= {low}")
    return v


def _unit(value, name, who):
    v = _number(value, name, who)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{who}: invalid {name} {v}; it must be in [0, 1)")
    return v


class Optimizer:
    """Base class: parameter groups, flat state, zero_grad, state_dict.

    Subclasses define `defaults`, `_check(group)` (validates hyper-parameters),
    `state_names` and `_update(run, state, group)`.

    Example:
        >>> opt = fnn.SGD(model.parameters(), lr=0.1)
        >>> opt.zero_grad(); opt.param_groups[0]["lr"]
        0.1
    """

    state_names: tuple = ()

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        self.param_groups: list[dict] = []
        self._group_state: list[dict] = []
        if hasattr(params, "parameters") and callable(params.parameters):
            params = params.parameters()  # a model was passed
        params = list(params) if not isinstance(params, dict) else [params]
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list; pass model.parameters()")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict) -> None:
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{type(self).__name__}: a parameter group is a dict with 'params'")
        name = type(self).__name__
        params = unique_parameters(group["params"], name)
        if not params:
            raise ValueError(f"{name}: a parameter group has no parameters")
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in taken for p in params):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise TypeError(f"{name}: unknown hyper-parameter(s) {sorted(unknown)}; "
                            f"{name} takes {sorted(self.defaults)}")
        full = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        full = self._check(full)
        full["params"] = params
        self.param_groups.append(full)
        self._group_state.append({"key": layout_key(params), "runs": contiguous_runs(params),
                                  "state": None})

    def _check(self, group: dict) -> dict:
        return group

    def _runs_and_state(self, i: int):
        gs = self._group_state[i]
        if layout_key(self.param_groups[i]["params"]) != gs["key"]:
            raise RuntimeError(f"{type(self).__name__}: its parameters were moved into another model "
                               "after the optimizer was created; create the optimizer after the model "
                               "(e.g. opt = fnn.SGD(model.parameters(), lr=...))")
        if gs["state"] is None:
            gs["state"] = [dict() for _ in gs["runs"]]
        return gs["runs"], gs["state"]

    def zero_grad(self) -> None:
        """Set the gradients of every parameter this optimizer updates to 0."""
        for i in range(len(self.param_groups)):
            for run in self._runs_and_state(i)[0]:
                run.grad[...] = 0

    def step(self) -> None:
        """Apply one update to every parameter from its current .grad."""
        for i, group in enumerate(self.param_groups):
            runs, states = self._runs_and_state(i)
            for run, state in zip(runs, states):
                self._update(run, state, group)

    # -- compiled plans (fastnn/plan.py) run step() as C++ steps over spans of one flat buffer
    def _plan_step(self, run, state, group):
        """(a _core.plan_* step doing what _update(run, state, group) does, and a function that
        records n applied steps in `state`), or None: this optimizer has no plan form."""
        return None

    def _update(self, run, state, group) -> None:
        """One update of a run of parameters (each optimizer defines it)."""
        raise NotImplementedError

    def _plan_steps(self, store):
        """([steps], commit(n)) for every span this optimizer updates, in step()'s order, or None
        when some span is outside `store` or has no plan form."""
        steps, commits = [], []
        for i, group in enumerate(self.param_groups):
            runs, states = self._runs_and_state(i)
            for run, state in zip(runs, states):
                made = self._plan_step(run, state, group) if run.store is store else None
                if made is None:
                    return None
                steps.append(made[0])
                commits.append(made[1])
        return steps, lambda n: [commit(n) for commit in commits]

    # -- state_dict in PyTorch's layout: per-parameter state keyed by a global index
    def state_dict(self) -> dict:
        state, groups, index = {}, [], 0
        for i, group in enumerate(self.param_groups):
            runs, states = self._runs_and_state(i)
            ids = []
            for run, st in zip(runs, states):
                offset = 0
                for p in run.params:
                    if st:
                        state[index] = {k: (v if np.isscalar(v) else
                                            v[offset:offset + p.size].reshape(p.shape).copy())
                                        for k, v in st.items()}
                    ids.append(index)
                    index += 1
                    offset += p.size
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyper-parameters and state saved by state_dict() (from fastnn or, converted
        to NumPy, from the same torch.optim optimizer). Everything is checked before anything
        changes."""
        name = type(self).__name__
        try:
            groups, state = state_dict["param_groups"], state_dict["state"]
        except (KeyError, TypeError):
            raise ValueError(f"{name}.load_state_dict expects a dict with 'state' and "
                             "'param_groups', as returned by state_dict()") from None
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: {len(groups)} parameter groups given, "
                             f"the optimizer has {len(self.param_groups)}")
        new_groups, new_states = [], []
        for i, (saved, group) in enumerate(zip(groups, self.param_groups)):
            ids = list(saved.get("params", []))
            if len(ids) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: group {i} has {len(ids)} parameters, "
                                 f"the optimizer's has {len(group['params'])}")
            hyper = {k: saved[k] for k in self.defaults if k in saved}
            new_groups.append(self._check({**{k: group[k] for k in self.defaults}, **hyper}))
            runs, _ = self._runs_and_state(i)
            per_param = iter(ids)
            run_states = []
            for run in runs:
                # keys are ints, or strings after a trip through JSON
                entries = [state.get(k, state.get(str(k))) for k in (next(per_param) for _ in run.params)]
                run_states.append(self._stack_state(run, entries, name))
            new_states.append(run_states)
        for i, (hyper, run_states) in enumerate(zip(new_groups, new_states)):
            self.param_groups[i].update(hyper)
            self._group_state[i]["state"] = run_states

    def _stack_state(self, run, entries, name) -> dict:
        present = [e for e in entries if e]
        if not present:
            return {}
        if not all(isinstance(e, dict) for e in present):
            raise ValueError(f"{name}.load_state_dict: a parameter's state must be a dict of arrays, got "
                             f"{type(next(e for e in present if not isinstance(e, dict))).__name__}")
        if len(present) != len(entries):
            raise ValueError(f"{name}.load_state_dict: state is given for some parameters of a "
                             "model but not others; save and load the whole optimizer")
        keys = [k for k, v in entries[0].items() if k != "step" and v is not None]
        missing = [k for k in self.state_names if k not in keys]
        if missing:
            raise ValueError(f"{name}.load_state_dict: a parameter's state lacks {missing}")
        out: dict[str, Any] = {}
        for key in keys:
            parts = []
            for p, e in zip(run.params, entries):
                v = e.get(key)
                if v is None:
                    raise ValueError(f"{name}.load_state_dict: a parameter's state lacks {key!r}")
                v = state_array(v, run.data.dtype, f"{name}.load_state_dict: state {key!r}")
                if v.shape != p.shape:
                    raise ValueError(f"{name}.load_state_dict: state {key!r} has shape {v.shape}, "
                                     f"its parameter has shape {p.shape}")
                parts.append(v.reshape(-1))
            out[key] = np.concatenate(parts)
        if any("step" in e for e in entries):
            if not all("step" in e for e in entries):
                raise ValueError(f"{name}.load_state_dict: a step count is given for some parameters but "
                                 "not others")
            steps = {float(np.asarray(e["step"])) for e in entries}
            if len(steps) != 1 or not next(iter(steps)).is_integer() or next(iter(steps)) < 0:
                raise ValueError(f"{name}.load_state_dict: step counts must be one whole number "
                                 f"shared by the parameters of a model, got {sorted(steps)}")
            out["step"] = int(steps.pop())
        return out

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in g.items() if k != "params"]
        return "\n".join(lines + [")"])


class SGD(Optimizer):
    """Stochastic gradient descent, as torch.optim.SGD:

        g ← g + weight_decay·θ
        b ← g (first step), else momentum·b + (1 − dampening)·g
        g ← g + momentum·b (nesterov), else b
        θ ← θ − lr·g

    Example:
        >>> p = fnn.Parameter([3.0]); p.grad[...] = 4.0
        >>> SGD([p], lr=0.1).step(); p.data
        array([2.6])
    """

    state_names = ("momentum_buffer",)

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "nesterov": nesterov, "weight_decay": weight_decay})

    def _check(self, g):
        who = "SGD"
        g["lr"] = _at_least(g["lr"], "learning rate lr", who)
        g["momentum"] = _at_least(g["momentum"], "momentum", who)
        g["dampening"] = _number(g["dampening"], "dampening", who)
        g["weight_decay"] = _at_least(g["weight_decay"], "weight_decay", who)
        g["nesterov"] = bool(g["nesterov"])
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError("SGD: nesterov=True needs momentum > 0 and dampening = 0, got "
                             f"momentum={g['momentum']}, dampening={g['dampening']}")
        return g

    @staticmethod
    def _init_state(state, data, g):
        """(the momentum buffer or None, whether it is new). PyTorch sets a new buffer to the
        first gradient instead of updating it; it joins the state once a step has filled it."""
        if g["momentum"] == 0:
            return None, False
        buf = state.get("momentum_buffer")
        return (np.empty_like(data), True) if buf is None else (buf, False)

    def _update(self, run, state, g):
        buf, first = self._init_state(state, run.data, g)
        ops().sgd_step(run.data, run.grad, buf, g["lr"], g["momentum"], g["dampening"], g["nesterov"],
                       g["weight_decay"], first)
        if first:
            state["momentum_buffer"] = buf

    def _plan_step(self, run, state, g):
        if type(self) is not SGD:
            return None
        buf, first = self._init_state(state, run.data, g)

        def commit(n):
            if first and n:
                state["momentum_buffer"] = buf
        return _core.plan_sgd(run.start, run.stop, buf, first=first, lr=g["lr"], momentum=g["momentum"],
                              dampening=g["dampening"], nesterov=g["nesterov"],
                              weight_decay=g["weight_decay"]), commit


class Adam(Optimizer):
    """Adam (Kingma & Ba), as torch.optim.Adam (L2 weight decay added to the gradient):

        m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g²
        θ ← θ − lr·(m / (1 − β1ᵗ)) / (√(v / (1 − β2ᵗ)) + eps)

    Example:
        >>> p = fnn.Parameter([1.0]); p.grad[...] = 0.5
        >>> fnn.Adam([p], lr=0.1).step(); p.data        # the first step moves by lr, whatever the gradient's size
        array([0.9])
    """

    state_names = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay})

    def _check(self, g):
        who = type(self).__name__
        g["lr"] = _at_least(g["lr"], "learning rate lr", who)
        g["eps"] = _at_least(g["eps"], "eps", who)
        g["weight_decay"] = _at_least(g["weight_decay"], "weight_decay", who)
        try:
            b1, b2 = g["betas"]
        except (TypeError, ValueError):
            raise TypeError(f"{who}: betas must be a pair (beta1, beta2), got {g['betas']!r}") from None
        g["betas"] = (_unit(b1, "beta1", who), _unit(b2, "beta2", who))
        return g

    @staticmethod
    def _init_state(state, data, g):
        """Creates the state of a flat run like `data` before its first step."""
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(data), exp_avg_sq=np.zeros_like(data))

    def _update(self, run, state, g):
        self._init_state(state, run.data, g)
        b1, b2 = g["betas"]
        ops().adam_step(run.data, run.grad, state["exp_avg"], state["exp_avg_sq"], state["step"] + 1,
                        g["lr"], b1, b2, g["eps"], g["weight_decay"], self.decoupled)
        state["step"] += 1

    def _plan_step(self, run, state, g):
        if type(self) not in (Adam, AdamW):
            return None
        self._init_state(state, run.data, g)
        b1, b2 = g["betas"]
        return _core.plan_adam(run.start, run.stop, state["exp_avg"], state["exp_avg_sq"], step=state["step"],
                               lr=g["lr"], beta1=b1, beta2=b2, eps=g["eps"], weight_decay=g["weight_decay"],
                               decoupled=self.decoupled), lambda n: state.update(step=state["step"] + n)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW:
    θ ← θ·(1 − lr·weight_decay) before the Adam step.

    Example:
        >>> p = fnn.Parameter([1.0]); p.grad[...] = 0.0
        >>> fnn.AdamW([p], lr=0.1, weight_decay=0.5).step(); p.data   # decay alone: 1 − 0.1·0.5
        array([0.95])
    """

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


class RMSprop(Optimizer):
    """RMSprop, as torch.optim.RMSprop (centered=False):

        v ← α·v + (1 − α)·g²,   θ ← θ − lr·g / (√v + eps)   (or via a momentum buffer)

    Example:
        >>> p = fnn.Parameter([1.0]); p.grad[...] = 2.0
        >>> fnn.RMSprop([p], lr=0.01, alpha=0.0, eps=0.0).step(); p.data   # lr·g/√(g²)
        array([0.99])
    """

    state_names = ("square_avg",)

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0):
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps,
                                  "weight_decay": weight_decay, "momentum": momentum})

    def _check(self, g):
        who = "RMSprop"
        for k, name in (("lr", "learning rate lr"), ("eps", "eps"), ("weight_decay", "weight_decay"),
                        ("momentum", "momentum"), ("alpha", "alpha")):
            g[k] = _at_least(g[k], name, who)
        return g

    @staticmethod
    def _init_state(state, data, g):
        """Creates the state of a flat run like `data` before a step."""
        if not state:
            state.update(step=0, square_avg=np.zeros_like(data))
        if g["momentum"] > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = np.zeros_like(data)

    def _update(self, run, state, g):
        self._init_state(state, run.data, g)
        ops().rmsprop_step(run.data, run.grad, state["square_avg"],
                           state["momentum_buffer"] if g["momentum"] > 0 else None,
                           g["lr"], g["alpha"], g["eps"], g["weight_decay"], g["momentum"])
        state["step"] += 1

    def _plan_step(self, run, state, g):
        if type(self) is not RMSprop:
            return None
        self._init_state(state, run.data, g)
        return _core.plan_rmsprop(run.start, run.stop, state["square_avg"],
                                  state["momentum_buffer"] if g["momentum"] > 0 else None, lr=g["lr"],
                                  alpha=g["alpha"], eps=g["eps"], weight_decay=g["weight_decay"],
                                  momentum=g["momentum"]), lambda n: state.update(step=state["step"] + n)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}
