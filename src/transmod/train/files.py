"""The files one training run writes into its folder; the workflow's rules declare the same names."""

MODULE_DIR = "module"  # the best module, in the adapters library's layout
HEAD_FILE = "head.safetensors"
HISTORY_FILE = "history.json"  # per-epoch loss and validation metrics, and the run's settings
PREDICTIONS_FILE = "test_predictions.json"  # written last: its presence means a finished run
# training seconds at the end of each epoch: the only file of a run that differs when it is run again (the
# others are exact, resumed or not), so it is kept apart; evaluation adds it to the metrics' curve
TIMING_FILE = "timing.json"
STATE_DIR = "train_state"  # resume checkpoints, removed once the outputs are written
