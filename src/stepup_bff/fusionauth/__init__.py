"""The FusionAuth client: every call the BFF makes to FusionAuth (docs/fusionauth.md §12), and nothing else."""
