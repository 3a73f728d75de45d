"""The command line, `unlearn-sweep` (`python -m unlearn_sweep`): above every package, so
nothing in unlearn_core/, search_spaces/, sweeps/ or analysis/ imports it."""
