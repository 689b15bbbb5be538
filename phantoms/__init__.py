"""Synthetic dynamic CT myelograms with a ground truth."""
