"""The HTTP surface: one router per resource (sign-in, session, step-up, telegrams, health) and the request and
response bodies (`schemas`). Routes stay thin: they read the guards from `deps` and call the domain services."""
