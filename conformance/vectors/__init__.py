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
#: major version of the manifest layout (the schema file is vectors-v<N>.schema.json)
SCHEMA_VERSION = 1
#: value of the first record of an output file
OUTPUT_FORMAT_NAME = "setadam-output"

HERE = Path(__file__).resolve().parent
CANONICAL_DIR = HERE / "canonical"
SCHEMA_PATH = HERE / "schema" / f"vectors-v{SCHEMA_VERSION}.schema.json"
OUTPUT_SCHEMA_PATH = HERE / "schema" / f"outputs-v{SCHEMA_VERSION}.schema.json"

__all__ = [
    "CANONICAL_DIR",
    "FORMAT_NAME",
    "OUTPUT_FORMAT_NAME",
    "OUTPUT_SCHEMA_PATH",
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
]
