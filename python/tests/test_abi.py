"""The ctypes mirrors of include/llamac.h's structs against the C compiler's layout of the real header: a C
program prints sizeof and offsetof of every field; python/llamac/_native.py must agree."""
import ctypes
import os
import subprocess

from llamac import _native
from conftest import ROOT


def test_struct_layouts(tmp):
    lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "llamac.h"', "int main(void) {"]
    for cname, st in _native.STRUCTS.items():
        lines.append('printf("%s %%zu\\n", sizeof(%s));' % (cname, cname))
        for field, _ in st._fields_:
            lines.append('printf("%s.%s %%zu\\n", offsetof(%s, %s));' % (cname, field, cname, field))
    lines.append("return 0; }")
    src = os.path.join(tmp, "layout.c")
    exe = os.path.join(tmp, "layout")
    open(src, "w").write("\n".join(lines))
    subprocess.run(["cc", "-std=c11", "-I", os.path.join(ROOT, "include"), src, "-o", exe], check=True)
    c_layout = dict(line.rsplit(" ", 1) for line in subprocess.run([exe], capture_output=True, check=True,
                                                                   text=True).stdout.splitlines())
    py_layout = {}
    for cname, st in _native.STRUCTS.items():
        py_layout[cname] = str(ctypes.sizeof(st))
        for field, _ in st._fields_:
            py_layout["%s.%s" % (cname, field)] = str(getattr(st, field).offset)
    assert py_layout == c_layout


def test_every_public_function_is_bound():
    """Every function the header declares is in the shared library, and the library exports nothing else."""
    out = subprocess.run(["nm", "-D", "--defined-only", _native.lib._name], capture_output=True, text=True,
                         check=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if " T " in line}
    assert exported and all(name.startswith("llamac_") for name in exported), sorted(exported)[:10]
    header = open(os.path.join(ROOT, "include", "llamac.h")).read()
    for name in exported:
        assert name + "(" in header, name
