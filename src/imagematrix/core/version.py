"""The package's version: one value, for the command's --version, the generated pins and every statement we sign."""

__version__ = "0.1.0"
