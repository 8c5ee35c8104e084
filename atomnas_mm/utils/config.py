"""Make ``_base_ = 'atomnas_mm::atomnas/...'`` resolvable by mmengine."""
import importlib.util
import os.path as osp


def register_config_package() -> None:
    """Teach mmengine 0.10.7 where our shipped configs are.

    mmengine resolves ``pkg::path`` bases only for packages in its
    hard-coded ``MODULE2PACKAGE``, and finds a package's folder from its
    distribution's location, which for a PEP 660 editable install (``pip
    install -e``) is site-packages, where the package is not. We add our
    package and, when that folder does not exist, fall back to where Python
    imports the package from. Idempotent.
    """
    from mmengine.config import config, utils
    utils.MODULE2PACKAGE.setdefault('atomnas_mm', 'atomnas_mm')
    original = config.get_installed_path
    if getattr(original, '_atomnas_fallback', False):
        return

    def get_installed_path(package: str) -> str:
        path = original(package)
        if not osp.isdir(path):
            spec = importlib.util.find_spec(package)
            if spec is not None and spec.origin is not None:
                return osp.dirname(spec.origin)
        return path

    get_installed_path._atomnas_fallback = True
    config.get_installed_path = get_installed_path
