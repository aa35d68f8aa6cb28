"""Writes shmetrics_ffi.h, the C API's declarations as PHP's FFI::load reads
them: shmetrics_c.h run through the C preprocessor with
SHMETRICS_FFI_DECLARATIONS (no system headers, no comments, no
preprocessor lines), after FFI's two defines: the scope preload.php
registers and the library's soname.

    make_ffi_header.py INPUT OUTPUT SONAME CC [CC ARGS...]
"""
import subprocess
import sys

source, output, soname, *cc = sys.argv[1:]
declarations = subprocess.run(cc + ["-E", "-P", "-DSHMETRICS_FFI_DECLARATIONS", source], check=True,
                              capture_output=True, text=True).stdout
with open(output, "w") as f:
    f.write('#define FFI_SCOPE "shmetrics"\n#define FFI_LIB "%s"\n' % soname)
    f.write(declarations)
