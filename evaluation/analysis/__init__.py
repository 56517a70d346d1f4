"""Numbers from finished runs: paired statistics, the summary table, the paper's findings,
comparisons of runs and where two runs' episodes part."""
