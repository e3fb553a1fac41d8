"""Pipeline stages; each has `run(cfg, run_dir, device)` and writes <run_dir>/<stage>/DONE when finished."""
