"""Scheme-agnostic machinery: runtime loop, load objects, registries, cache, metadata, events, pools."""
