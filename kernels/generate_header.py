"""Write the C header of fastnet's codes and shared constants, from the Python sources.

Run by CMake at build time: ``python generate_header.py fastnet/ OUT.h``.
It reads ``fastnet/spec.py`` (codes, hyper-parameter layout) and
``fastnet/_config.py`` (tile and block sizes, clamps) by path, so the build
needs neither numpy nor an installed fastnet, and the C kernels can never
disagree with the Python side.
"""

import importlib.util
import sys
from pathlib import Path

#: _config.py names the C kernels use, and the C type each is written as.
SHARED_CONSTANTS = {
    "TILE_ROWS": "int64",
    "PARTIAL_GRADIENT_BYTES": "int64",
    "CACHE_LINE_BYTES": "int64",
    "PARAMETER_CHUNK": "int64",
    "PRODUCT_CHUNK": "int64",
    "INPUT_PASS_BYTES": "int64",
    "SIGMOID_CLAMP": "double",
    "SIGMOID_CLAMP_FLOAT32": "float",
}


def load(path):
    """Import one standalone module from its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def constant(name, kind, value):
    """One #define, typed as the kernels use it."""
    if kind == "int64":
        return f"#define FN_{name} INT64_C({int(value)})"
    if kind == "float":
        return f"#define FN_{name} {float(value)!r}f"
    return f"#define FN_{name} {float(value)!r}"


def header(package):
    """The header's text for the fastnet sources in folder ``package``."""
    spec, config = load(package / "spec.py"), load(package / "_config.py")
    lines = ["/* Generated at build time by kernels/generate_header.py from fastnet/spec.py",
             " * and fastnet/_config.py.  Do not edit: change those files. */",
             "#ifndef FASTNET_SPEC_H", "#define FASTNET_SPEC_H", "", "#include <stdint.h>", ""]
    lines += spec.c_header_lines()
    lines += [constant(name, kind, getattr(config, name)) for name, kind in SHARED_CONSTANTS.items()]
    lines += ["", "#endif", ""]
    return "\n".join(lines)


def main(argv):
    """Entry point: ``generate_header.py PACKAGE_DIR OUTPUT``; writes OUTPUT only if it changes."""
    package, output = Path(argv[1]), Path(argv[2])
    text = header(package)
    if not output.exists() or output.read_text() != text:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)


if __name__ == "__main__":
    main(sys.argv)
