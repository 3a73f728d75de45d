"""GRUN's gated low-rank representation edit and where it applies: the last prompt token.

The edit is part of the model once `grun.prepare` attached it (like an adapter), so its forward
hooks live as long as the model. Where it applies is a `Site` in a context variable: the loss sets
it from the labels (`located`), the NPO reference pass sets an empty one (edit off). Any other
forward (evaluation, generation) finds the last prompt token as the last occurrence of the prompt's
final ANCHOR_LEN tokens (recorded from the first training batch): a generation prefill ends with
them, and in a teacher-forced (question, answer) pass they end the question. A forward without them
(a KV-cache decoding step, a model not yet trained) is left unedited. Known limit: an answer that
repeats them moves the edit there (the built-in template's anchor is "Answer" ":").
The edit is no weight merge (its gate and position depend on the input), so a saved model keeps it
in two files beside the weights (`save_edit`), which `attach_saved` re-attaches at load.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearn_core.errors import UserError
from unlearn_core.logprobs import IGNORE
from unlearn_core.methods._layers import check_layers, decoder_layers, hidden

log = logging.getLogger(__name__)
ANCHOR_LEN = 2  # enough to be unique in chat templates ("<|end_header_id|>" "\n\n", "Answer" ":")
# The saved edit beside a model's weights: its tensors (and the anchor), and where it applies
EDIT_WEIGHTS = "grun_edit.safetensors"
EDIT_CONFIG = "grun_edit.json"
EDIT_FORMAT = 1  # bumped when the files change meaning; an unknown one is refused


@dataclass
class Site:
    positions: torch.Tensor | None  # (B,) position edited in each row, -1 for none; None: edit off
    gate_logits: list[torch.Tensor] | None  # collects each edited layer's gate logits (training)


_SITE: contextvars.ContextVar[Site | None] = contextvars.ContextVar("grun_site", default=None)


@contextmanager
def located(positions: torch.Tensor | None) -> Iterator[list[torch.Tensor]]:
    """Edit at `positions` (None: no edit) during the block; yields the collected gate logits."""
    gates: list[torch.Tensor] = []
    token = _SITE.set(Site(positions, gates))
    try:
        yield gates
    finally:
        _SITE.reset(token)


def last_prompt_positions(labels: torch.Tensor) -> torch.Tensor:
    """(B,) index of the token before the first answer label; -1 for a row without answer."""
    answer = labels != IGNORE
    return torch.where(answer.any(-1), answer.int().argmax(-1) - 1, -1)


def anchor_positions(ids: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """(B,) index of the last token of the anchor's last occurrence in each row, -1 if absent."""
    k = anchor.numel()
    if ids.shape[1] < k:
        return torch.full((ids.shape[0],), -1, device=ids.device)
    hits = (ids.unfold(1, k, 1) == anchor).all(-1)  # (B, T-k+1)
    starts = torch.arange(hits.shape[1], device=ids.device)
    last = torch.where(hits, starts, -1).max(-1).values
    return torch.where(last >= 0, last + k - 1, -1)


class GatedEdit(torch.nn.Module):
    """h + sigmoid(w.h + c) * R^T (W h + b - R h): LoReFT with orthonormal rows of R (r, d).

    R is the orthonormalised (QR) free parameter `rotate`, so it stays orthonormal under any update
    (torch's householder `parametrizations.orthogonal` of a wide matrix, which pyreft uses, loses
    orthonormality once its parameter moves freely: measured with torch 2.13)."""

    def __init__(self, d: int, rank: int, gen: torch.Generator) -> None:
        super().__init__()
        self.rotate = torch.nn.Parameter(torch.randn(rank, d, generator=gen))
        self.source = torch.nn.Linear(d, rank)
        self.gate = torch.nn.Linear(d, 1)
        bound = d**-0.5  # nn.Linear's default range, drawn from the seeded generator
        with torch.no_grad():
            for p in (*self.source.parameters(), *self.gate.parameters()):
                p.uniform_(-bound, bound, generator=gen)

    def rotation(self) -> torch.Tensor:
        """R (rank, d) with orthonormal rows: Q of rotate^T = QU, signs fixed so diag(U) > 0."""
        q, u = torch.linalg.qr(self.rotate.T)  # (d, rank), (rank, rank)
        return (q * torch.sign(torch.diagonal(u))).T

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Edited states (N, d) and gate logits (N,) for hidden states h (N, d)."""
        x = h.float()
        gate = self.gate(x).squeeze(-1)  # (N,)
        r = self.rotation()  # (rank, d)
        delta = (self.source(x) - x @ r.T) @ r  # (N, d)
        return (x + torch.sigmoid(gate)[:, None] * delta).to(h.dtype), gate

    def hook(self, module: torch.nn.Module, args: tuple, output):
        """Forward hook on the decoder layer: edit its output at the site's positions."""
        site = _SITE.get()
        if site is None or site.positions is None:
            return None
        h = hidden(output)  # (B, T, d)
        rows = (site.positions >= 0).nonzero().squeeze(-1)
        if rows.numel() == 0:  # e.g. a KV-cache decoding step: the prefill carried the edit
            return None
        cols = site.positions[rows]
        edited, gate = self(h[rows, cols])
        if site.gate_logits is not None:
            site.gate_logits.append(gate)
        h = h.index_put((rows, cols), edited)
        return (h, *output[1:]) if isinstance(output, tuple) else h


class GrunEdits(torch.nn.Module):
    """The edits by layer, the anchor, and the model-level hooks that locate the edit."""

    def __init__(self, d: int, layers: tuple[int, ...], rank: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.hidden_size, self.rank = d, rank
        self.edits = torch.nn.ModuleDict({str(i): GatedEdit(d, rank, gen) for i in layers})
        self.register_buffer("anchor", torch.zeros(0, dtype=torch.long), persistent=False)
        self._tokens: list[contextvars.Token] = []

    def record_anchor(self, ids: torch.Tensor, positions: torch.Tensor) -> None:
        """Keep the last ANCHOR_LEN prompt tokens of the first training batch (once)."""
        if self.anchor.numel():
            return
        rows = [
            ids[i, p - ANCHOR_LEN + 1 : p + 1]
            for i, p in enumerate(positions.tolist())
            if p >= ANCHOR_LEN - 1
        ]
        assert rows, "GRUN needs prompts of at least ANCHOR_LEN tokens"
        if any(not torch.equal(r, rows[0]) for r in rows):
            log.warning(
                "prompts end with different tokens; GRUN evaluation edits the last "
                "occurrence of the first prompt's ending"
            )
        self.anchor = rows[0].clone()

    def locate(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        """Model pre-hook: outside a loss, edit at the anchor (or nowhere before training)."""
        site = _SITE.get()
        ids = kwargs.get("input_ids", args[0] if args else None)
        if site is None and self.anchor.numel() and ids is not None:
            site = Site(anchor_positions(ids, self.anchor), None)
        self._tokens.append(_SITE.set(site))

    def release(self, module: torch.nn.Module, args: tuple, kwargs: dict, output) -> None:
        _SITE.reset(self._tokens.pop())


def attach(model: torch.nn.Module, edits: GrunEdits) -> torch.nn.Module:
    """Make `edits` part of `model` (as `model.grun`) with the hooks that apply them, for the
    model's lifetime. A second edit is refused: the first one's hooks would stay behind it."""
    if edits_of(model) is not None:
        raise UserError("this model already carries a GRUN edit; accepted: a model without one")
    model.grun = edits
    layers = decoder_layers(model)
    for i in edits.edits:
        layers[int(i)].register_forward_hook(edits.edits[i].hook)
    model.register_forward_pre_hook(edits.locate, with_kwargs=True)
    model.register_forward_hook(edits.release, with_kwargs=True, always_call=True)
    return model


def edits_of(model: torch.nn.Module) -> GrunEdits | None:
    return next((m for m in model.modules() if isinstance(m, GrunEdits)), None)


def save_edit(model: torch.nn.Module, out: Path) -> str | None:
    """Write the model's edit (tensors and anchor; layers, rank, width) into `out`; returns its
    state-dict prefix, to leave out of the model's own weights, or None for a model without one."""
    from safetensors.torch import save_file

    found = [(name, m) for name, m in model.named_modules() if isinstance(m, GrunEdits)]
    if not found:
        return None
    name, edits = found[0]
    tensors = {k: v.detach().cpu().contiguous() for k, v in edits.state_dict().items()}
    save_file(tensors | {"anchor": edits.anchor.cpu()}, out / EDIT_WEIGHTS)
    config = {
        "format": EDIT_FORMAT,
        "hidden_size": edits.hidden_size,
        "rank": edits.rank,
        "layers": [int(i) for i in edits.edits],
    }
    (out / EDIT_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return f"{name}."


def attach_saved(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    """`model` with the edit saved in `folder` re-attached; unchanged when the folder holds none.
    Files that do not fit each other or the model are refused in one line."""
    weights, config = folder / EDIT_WEIGHTS, folder / EDIT_CONFIG
    if not weights.is_file() and not config.is_file():
        return model
    if not weights.is_file() or not config.is_file():
        have, lack = (weights, config) if weights.is_file() else (config, weights)
        raise UserError(
            f"model folder {str(folder)!r} has {have.name} but no {lack.name}; "
            "accepted: both (a saved GRUN model) or neither"
        )
    from safetensors.torch import load_file

    try:
        c = json.loads(config.read_text(encoding="utf-8"))
        fmt, width = c["format"], int(c["hidden_size"])
        layers, rank = tuple(int(i) for i in c["layers"]), int(c["rank"])
    except (ValueError, KeyError, TypeError):
        fmt = None
    if fmt != EDIT_FORMAT:
        raise UserError(
            f"{config} is not a GRUN edit config; accepted: format {EDIT_FORMAT} with layers, "
            "rank and hidden_size, as save_job writes it"
        )
    if width != model.config.hidden_size:
        raise UserError(
            f"{config} is for hidden size {width}, but this model's is "
            f"{model.config.hidden_size}; accepted: the model the edit was trained on"
        )
    check_layers(model, layers, f"{config}: GRUN layer")
    edits = GrunEdits(width, layers, rank, seed=0)
    tensors = load_file(weights)
    # every tensor of the edit with its shape, and a 1-D anchor of any length
    expected = {k: tuple(v.shape) for k, v in edits.state_dict().items()} | {"anchor": 1}
    found = {k: v.ndim if k == "anchor" else tuple(v.shape) for k, v in tensors.items()}
    keys = expected.keys() | found.keys()
    wrong = sorted(k for k in keys if expected.get(k, "absent") != found.get(k, "absent"))
    if wrong:
        raise UserError(
            f"{weights} does not match {config.name} (first difference: {wrong[0]}); "
            "accepted: the two files as save_job wrote them"
        )
    anchor = tensors.pop("anchor")
    edits.load_state_dict(tensors)
    edits.anchor = anchor.long()
    return attach(model, edits.to(next(model.parameters()).device))
