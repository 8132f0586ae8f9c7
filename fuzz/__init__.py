"""Fuzz targets for Chimera's wire codecs, run by the atheris harnesses here and by the tests."""
