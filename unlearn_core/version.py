"""The version, in one place: pyproject reads it, results and manifests record it."""

VERSION = "0.1.0"
