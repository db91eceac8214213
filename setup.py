# The compiled packet reader and CSV field splitter are the only C in the project;
# everything else is in pyproject.toml.
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "minewatch.sources._fastpcap",
            sources=["src/minewatch/sources/_fastpcap.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall"],
        ),
        Extension(
            "minewatch.sources._fastcsv",
            sources=["src/minewatch/sources/_fastcsv.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall"],
        ),
    ]
)
