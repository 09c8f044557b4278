"""fusionauth_dev: an embedded, in-memory FusionAuth look-alike for development and tests. NOT FusionAuth.

It speaks the parts of FusionAuth's HTTP API a step-up BFF uses (docs/fusionauth.md) (OIDC login with PKCE, the
Two-Factor, Login and
JWT APIs) and seeds itself from FusionAuth kickstart files::

    from fusionauth_dev import create_dev_server, run

    server = create_dev_server(["kickstart/kickstart.json", "kickstart/email-mfa.json"], env=os.environ)
    seed = server.seed()          # issuer, application id + client secret, API keys, demo users
    run(server)                   # or serve server.app with any ASGI server
"""

from fusionauth_dev.app import DevServer, create_dev_app, create_dev_server
from fusionauth_dev.clock import Clock, ManualClock, SystemClock
from fusionauth_dev.kickstart import KICKSTART_SECRETS, KickstartError, fill_missing, load_kickstart
from fusionauth_dev.outbox import Message, Outbox
from fusionauth_dev.seed import DemoMethod, DemoUser, Seed, SeededApiKey, SeededApplication
from fusionauth_dev.serve import run

__all__ = [
    "KICKSTART_SECRETS",
    "Clock",
    "DemoMethod",
    "DemoUser",
    "DevServer",
    "KickstartError",
    "ManualClock",
    "Message",
    "Outbox",
    "Seed",
    "SeededApiKey",
    "SeededApplication",
    "SystemClock",
    "create_dev_app",
    "create_dev_server",
    "fill_missing",
    "load_kickstart",
    "run",
]
