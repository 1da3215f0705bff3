"""Training on Lightning: the module, optimizers and schedules, the fit that writes a bundle."""
