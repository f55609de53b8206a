"""Results: predictions tables, metrics and reports, patient aggregation, plots."""
