"""The README's first example must be examples/readme_example.cc verbatim,
which the build compiles: so the README shows code that compiles as written."""
import sys

readme, example = (open(p, encoding="utf-8").read() for p in sys.argv[1:3])
if "```cpp\n" + example + "```" not in readme:
    print(f"README.md does not contain {sys.argv[2]} verbatim in a ```cpp block")
    sys.exit(1)
print("1 passed, 0 failed")
