"""Installs atomnas_mm and ships configs/ and tools/ inside it (``.mim``),
the OpenMMLab way, so that ``_base_ = 'atomnas_mm::atomnas/...'`` resolves
from a user's own config."""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version() -> str:
    ns: dict = {}
    with open(osp.join(HERE, 'atomnas_mm', 'version.py')) as f:
        exec(f.read(), ns)
    return ns['__version__']


def add_mim_extension() -> None:
    """Link (editable install) or copy (wheel/sdist) configs, tools and
    specs into ``atomnas_mm/.mim`` so they travel with the package."""
    if 'develop' in sys.argv or any('editable' in a for a in sys.argv):
        mode = 'symlink'
    elif any(a in sys.argv for a in ('sdist', 'bdist_wheel', 'install')):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(HERE, 'atomnas_mm', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        src = osp.join(HERE, name)
        dst = osp.join(mim_path, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_path), dst)
        elif osp.isfile(src):
            shutil.copyfile(src, dst)
        else:
            shutil.copytree(src, dst)


def parse_requirements(path: str) -> list:
    reqs = []
    with open(osp.join(HERE, path)) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line:
                reqs.append(line)
    return reqs


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='atomnas_mm',
        version=read_version(),
        description='AtomNAS (ICLR 2020) for MMEngine, MMPretrain and MMDetection',
        long_description=open(osp.join(HERE, 'README.md')).read(),
        long_description_content_type='text/markdown',
        packages=find_packages(exclude=('configs', 'tools', 'tests',
                                        'benchmarks')),
        include_package_data=True,
        package_data={'atomnas_mm': ['.mim/configs/**/*', '.mim/tools/**/*',
                                     '.mim/model-index.yml',
                                     'models/arch/specs/*.json']},
        python_requires='>=3.9',
        # mmcv and mmpretrain are installed by tools/setup_env.sh: mmcv as
        # mmcv-lite (pure Python) for classification or built with its ops
        # against the installed torch for detection, two distributions that
        # no single requirement names; mmpretrain's declared "modelindex"
        # requirement is broken on PyPI. Detection is an extra.
        install_requires=['mmengine==0.10.7', 'torch'],
        extras_require={'det': ['mmdet==3.3.0']},
        license='Apache License 2.0',
        zip_safe=False,
    )
