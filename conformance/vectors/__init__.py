"""Golden vectors: versioned, language-neutral test vectors for Adam and SET-Adam ports.

``setadam-conformance vectors export DIR`` writes a set computed by the float64 reference;
``setadam-conformance vectors check DIR OUTPUTS`` checks what any program wrote for it.
Format and flags: docs/src/guide/vectors.md. The canonical set lives in ``canonical/`` next to
this file (:data:`CANONICAL_DIR`).
"""

from __future__ import annotations

from pathlib import Path

#: value of ``"format"`` in every manifest.json
FORMAT_NAME = "setadam-golden-vectors"
#: major version of the manifest layout of a set without contract vectors (the schema file is
#: vectors-v<N>.schema.json); every such set is written as version 1, byte for byte as before
SCHEMA_VERSION = 1
#: the version a set holding a contract vector (param groups, lr factors, absent gradients) is
#: written as; a version-2 vector without those fields is a version-1 vector
CONTRACT_SCHEMA_VERSION = 2
#: the manifest versions ``vectors check`` reads
SCHEMA_VERSIONS: tuple[int, ...] = (SCHEMA_VERSION, CONTRACT_SCHEMA_VERSION)
#: value of the first record of an output file
OUTPUT_FORMAT_NAME = "setadam-output"

HERE = Path(__file__).resolve().parent
CANONICAL_DIR = HERE / "canonical"
SCHEMA_PATH = HERE / "schema" / f"vectors-v{SCHEMA_VERSION}.schema.json"
CONTRACT_SCHEMA_PATH = HERE / "schema" / f"vectors-v{CONTRACT_SCHEMA_VERSION}.schema.json"
OUTPUT_SCHEMA_PATH = HERE / "schema" / f"outputs-v{SCHEMA_VERSION}.schema.json"

__all__ = [
    "CANONICAL_DIR",
    "CONTRACT_SCHEMA_PATH",
    "CONTRACT_SCHEMA_VERSION",
    "FORMAT_NAME",
    "OUTPUT_FORMAT_NAME",
    "OUTPUT_SCHEMA_PATH",
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "SCHEMA_VERSIONS",
]
