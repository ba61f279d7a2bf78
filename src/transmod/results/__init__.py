"""From finished runs to the study's tables and plots: gathering, statistics, rendering."""
