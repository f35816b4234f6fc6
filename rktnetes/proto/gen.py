"""Regenerates the Python stubs from the .proto sources with grpc_tools' bundled protoc.

The generated files are committed, so installing rktnetes needs no code generation; run this
after editing a .proto (`python -m rktnetes.proto.gen`, or scripts/gen_proto.sh).
`--check` regenerates into a temporary directory and fails if the committed stubs differ.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

# The repository root: protoc runs with it as the include path so the generated modules import
# each other as `rktnetes.proto.v1alpha.api_pb2`, matching the package layout.
ROOT = Path(__file__).resolve().parents[2]
PROTOS = ["rktnetes/proto/v1alpha/api.proto", "rktnetes/proto/runtime/v1/api.proto"]
OUTPUTS = ["_pb2.py", "_pb2.pyi", "_pb2_grpc.py"]


def generate(out: Path) -> None:
    from grpc_tools import protoc  # a build-time dependency only

    for proto in PROTOS:
        args = ["protoc", f"-I{ROOT}", f"--python_out={out}", f"--pyi_out={out}",
                f"--grpc_python_out={out}", str(ROOT / proto)]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto}")


def outputs(base: Path) -> list[Path]:
    return [base / (p[: -len(".proto")] + suffix) for p in PROTOS for suffix in OUTPUTS]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="fail if the committed stubs are stale")
    args = ap.parse_args(argv)
    if not args.check:
        generate(ROOT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = [str(c.relative_to(ROOT)) for g, c in zip(outputs(Path(tmp)), outputs(ROOT))
                 if not c.exists() or not filecmp.cmp(g, c, shallow=False)]
    if stale:
        print("stale generated stubs: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
