"""Loading an app from a Python file: ``turnlog chat examples/notes.py``."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

from turnlog.domain.errors import TurnlogError
from turnlog.services.sdk.app import App


class AppLoadError(TurnlogError):
    """Raised when an app file is missing, fails to import, or defines no single App."""

    code = "app_load_error"


def load_app(path: str | Path) -> App:
    """The ``turnlog.App`` defined in the file at ``path`` (the one named ``app`` if
    there are several)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise AppLoadError(f"no app file at {path}")
    name = f"turnlog_app_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        detail = "".join(traceback.format_exception(e)[1:])
        raise AppLoadError(f"importing {path} failed:\n{detail}") from None
    apps = {key: value for key, value in vars(module).items() if isinstance(value, App)}
    if not apps:
        raise AppLoadError(f"{path} defines no turnlog.App (e.g. app = turnlog.App('notes'))")
    if len(apps) > 1 and "app" not in apps:
        raise AppLoadError(f"{path} defines several apps ({', '.join(apps)}); name one 'app'")
    return apps.get("app") or next(iter(apps.values()))
