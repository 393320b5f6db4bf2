"""Strategy parameters from a TOML file, for tests (file I/O stays out of the domain).

The service reads its configuration through `supervisor.config.load_config`; tests that only
need the strategy parameters of a config file use `params_from_toml`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from atlas_actors.domain.params import Params, ParamsError, load_params
from atlas_actors.domain.templates import check_templates


def params_from_toml(path: str | Path) -> Params:
    """The validated strategy parameters of a TOML file; `ParamsError` names the file."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ParamsError(f"{p}: {exc}") from exc
    except OSError as exc:
        raise ParamsError(f"{p}: cannot read: {exc}") from exc
    try:
        return check_templates(load_params(doc))
    except ParamsError as exc:
        raise ParamsError(f"{p}: {exc}") from exc
