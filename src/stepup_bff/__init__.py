"""stepup-bff: a backend-for-frontend that adds step-up authentication to a web app through FusionAuth."""

__version__ = "0.1.0"
