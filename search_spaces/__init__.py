"""The search-space registry: method name -> define-by-run space(trial, opts) -> constants."""

from __future__ import annotations

from search_spaces import grad_ascent, grad_diff, npo

SPACES = {
    "grad_ascent": grad_ascent.space,
    "grad_diff": grad_diff.space,
    "npo": npo.space,
}
