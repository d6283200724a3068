#!/usr/bin/env python3
"""Every module a Swift target imports must be one of its declared dependencies.

SwiftPM builds targets in parallel: an import that is only satisfied because some
other target happened to build the module first compiles on one machine and fails
on the next. Usage: check-imports.py [PACKAGE_ROOT]; exit 1 names each missing edge.
"""
import glob
import os
import re
import sys

def declared(package_text):
    """Target name -> set of declared dependency names."""
    out = {}
    pattern = re.compile(r'\.(?:target|executableTarget|testTarget|systemLibrary)\(\s*name:\s*"(\w+)"')
    starts = [(m.start(), m.group(1)) for m in pattern.finditer(package_text)]
    for i, (start, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(package_text)
        body = package_text[start:end]
        deps = re.search(r'dependencies:\s*\[(.*?)\]', body, re.S)
        names = set(re.findall(r'"(\w+)"', deps.group(1))) if deps else set()
        path = re.search(r'path:\s*"([^"]+)"', body)
        out[name] = (names, path.group(1) if path else None, ".testTarget(" in body[:20])
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    targets = declared(open(os.path.join(root, "Package.swift")).read())
    problems = []
    for name, (deps, path, is_test) in sorted(targets.items()):
        folder = path or os.path.join("Tests" if is_test else "Sources", name)
        files = glob.glob(os.path.join(root, folder, "**", "*.swift"), recursive=True)
        for f in files:
            for module in re.findall(r'^\s*(?:@testable\s+|internal\s+|public\s+|@_implementationOnly\s+)*import\s+(\w+)',
                                     open(f).read(), re.M):
                # Only this package's own targets matter here (the test files also
                # hold Python scripts in string literals, whose imports are not ours).
                if module in targets and module not in deps and module != name:
                    problems.append(f"{os.path.relpath(f, root)}: imports {module}, "
                                    f"which target {name} does not list in Package.swift")
    for p in sorted(set(problems)):
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
