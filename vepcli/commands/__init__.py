"""Thin click commands: parse options, call one library function."""
