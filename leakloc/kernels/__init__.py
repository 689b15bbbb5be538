"""Numba hot loops. Each private ``_kernel`` is wrapped by a public checked function.

Public API
----------
stream_phase : one streaming pass over one phase (region statistics + per-voxel peak, arrival,
    previous enhancement)
region_stats : the same region statistics on a given enhancement array
RegionStats : their result (count, mean, max, n_above, pct, sum, hist; ``combine`` merges regions)
percentile_from_hist : the histogram percentile rule on its own
threshold_arrival : first threshold crossing of small (N, P) curves, interpolated between phases
half_rise : per voxel, when the enhancement first reaches half its peak, interpolated between passes
label_regions : region id per voxel from compartments, sectors and slice levels
line_sums : sums of masked pixels along straight lines of every angle and offset (streaks)
"""
from leakloc.kernels.arrival import half_rise, threshold_arrival
from leakloc.kernels.labels import label_regions
from leakloc.kernels.lines import line_sums
from leakloc.kernels.stats import RegionStats, percentile_from_hist, region_stats, stream_phase

__all__ = ["stream_phase", "region_stats", "RegionStats", "percentile_from_hist",
           "threshold_arrival", "half_rise", "label_regions", "line_sums"]
