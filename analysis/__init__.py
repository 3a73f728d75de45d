"""Pareto analysis of what sweeps wrote: load -> pareto, params -> summary -> plots, report;
export picks one configuration per method. Reads result files; never imports ray."""
