"""Install with ``pip install -r requirements.txt -e .`` (see README)."""
from pathlib import Path

from setuptools import setup


def _requirements():
    lines = Path(__file__).with_name("requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith(("#", "-"))]


setup(install_requires=_requirements())
