"""Agreements as code: the engine that reads, checks, applies and exports manifests (docs/agreements-as-code.md).

The kinds of object a manifest holds are declared by the apps that own them (`accord/<app>/manifest.py`) and
registered in `settings.ACCORD_MANIFEST_KINDS`; this package knows none of them.
"""

from .engine import (
    ApplyResult,
    Check,
    Kind,
    Loaded,
    apply_manifest,
    apply_manifests,
    export_data,
    export_manifest,
    export_object,
    export_objects,
    kind,
    kinds,
    load_manifest,
    load_manifests,
)
from .yamlio import ManifestError, ManifestSyntaxError, dump, read_yaml, read_yaml_documents

__all__ = [
    "ApplyResult", "Check", "Kind", "Loaded", "ManifestError", "ManifestSyntaxError", "apply_manifest",
    "apply_manifests", "dump", "export_data", "export_manifest", "export_object", "export_objects", "kind", "kinds",
    "load_manifest", "load_manifests", "read_yaml", "read_yaml_documents",
]
