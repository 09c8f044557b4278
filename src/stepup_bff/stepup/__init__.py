"""Step-up: the two-factor challenge through FusionAuth, the limits that stop guessing, and the guard that decides
whether a privileged request may run. The step-up rule lives here and nowhere else."""
