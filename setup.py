"""Package set-up for tfrs_multiscene. See README.md and docs/ARCHITECTURE.md."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _requirements(name):
    lines = (HERE / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="tfrs_multiscene",
    version="0.1.0",
    description="Multi-scenario recommendation with TensorFlow Recommenders and KerasHub text features",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["tfrs_multiscene", "tfrs_multiscene.*", "pipelines", "pipelines.*"]),
    include_package_data=True,
    install_requires=_requirements("requirements.txt"),
    extras_require={
        "dev": ["pytest>=8", "pytest-timeout", "ruff>=0.5"],
        # TFX 1.21 pins TensorFlow 2.21 and needs glibc 2.39 wheels: it lives in its own
        # environment (`make tfx-env`), never beside the pinned TF 2.20 stack.
        "tfx": ["tfx==1.21.*"],
    },
    entry_points={"console_scripts": ["tfrs-multiscene=tfrs_multiscene.cli:main"]},
)
