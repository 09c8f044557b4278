"""FastAPI dependency aliases: the dev server's state hangs off ``app.state`` (built in ``create_dev_server``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fusionauth_dev.directory import Directory
from fusionauth_dev.settings import DevSettings


def get_directory(request: Request) -> Directory:
    directory: Directory = request.app.state.directory
    return directory


def get_settings(request: Request) -> DevSettings:
    settings: DevSettings = request.app.state.settings
    return settings


DirectoryDep = Annotated[Directory, Depends(get_directory)]
SettingsDep = Annotated[DevSettings, Depends(get_settings)]
