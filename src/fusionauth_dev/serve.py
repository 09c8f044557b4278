"""Running the dev server with uvicorn, loopback by default, with a banner that says what it is."""

from __future__ import annotations

import ipaddress
import logging

import uvicorn

from fusionauth_dev.app import DevServer

logger = logging.getLogger("fusionauth_dev")

BANNER = (
    "fusionauth_dev is a DEVELOPMENT server that imitates FusionAuth's API. It is NOT FusionAuth: it keeps "
    "everything in memory, shows one-time codes on /_dev, and is not secure. Use it only on your own machine."
)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(server: DevServer, *, host: str = "127.0.0.1", port: int = 9011, log_level: str = "info") -> None:
    """Serve until interrupted. ``host`` defaults to loopback: the dev console shows live codes."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logger.warning(BANNER)
    if not _is_loopback(host):
        logger.warning(
            "fusionauth_dev is listening on %s, beyond this machine: anyone who can reach it can sign in.", host
        )
    logger.info("fusionauth_dev on http://%s:%d (dev console: /_dev)\n%s", host, port, server.seed().describe())
    uvicorn.run(server.app, host=host, port=port, log_level=log_level)
