#!/usr/bin/python3
"""Generates src/tokenizer/unicode_tables.{c,h}: the character classes the Llama 3 pre-tokenizer needs.

Classes follow what the pre-tokenizer regex means by them:
  \\p{L}  General_Category Lu, Ll, Lt, Lm, Lo
  \\p{N}  General_Category Nd, Nl, No
  \\s     the White_Space property, which is what python3-regex, Rust's regex (tiktoken) and Oniguruma
         (Hugging Face tokenizers) use (Python's str.isspace differs: it adds U+001C..U+001F).
Everything else is "other".

Sources, so that llamac splits text as the reference it is tested against, tiktoken, does:
  1. python3-regex (Debian's, Unicode 15.0): \\p{L}, \\p{N} and \\s for every code point it knows
     (everything but \\p{Cn}).
  2. tiktoken (npm, tests/node, pinned by its package-lock.json), whose Rust regex knows a newer Unicode
     (16.0 for tiktoken 1.0.22), for the code points assigned since: its classes come from
     tests/node/tiktoken_ref.cjs classes. The two must agree on every code point python3-regex knows;
     the script stops if they do not.
  --regex-only leaves out step 2 (tables of python3-regex's Unicode alone).

The data is a two-stage table: stage 1 maps the high bits of a code point (cp >> 7) to a block of 128
classes; identical blocks are shared. The output depends only on the two sources' versions.

Run from the repository root (needs python3-regex; node and tests/node/node_modules for step 2:
`cd tests/node && npm ci`):
    /usr/bin/python3 scripts/gen_unicode_tables.py [--regex-only]
"""
import json
import os
import subprocess
import sys

import regex

OTHER, LETTER, NUMBER, SPACE = 0, 1, 2, 3
SHIFT = 7
BLOCK = 1 << SHIFT
NCP = 0x110000

WHITE_SPACE = set(range(0x09, 0x0E)) | {0x20, 0x85, 0xA0, 0x1680} | set(range(0x2000, 0x200B)) | \
    {0x2028, 0x2029, 0x202F, 0x205F, 0x3000}

# A letter first assigned in each Unicode version: the newest one a source classifies as a letter
# names the version it knows.
SENTINELS = [("17.0.0", 0x10940), ("16.0.0", 0x105C0), ("15.1.0", 0x2EBF0), ("15.0.0", 0x31350),
             ("14.0.0", 0x1E290), ("13.0.0", 0x30000)]


def unicode_version(classes):
    for ver, cp in SENTINELS:
        if classes[cp] == LETTER:
            return ver
    return "older than 13.0.0"


def regex_classes():
    everything = "".join(chr(c) for c in range(NCP))
    classes = [OTHER] * NCP
    for cls, prop in ((LETTER, r"\p{L}"), (NUMBER, r"\p{N}"), (SPACE, r"\s")):
        for m in regex.finditer(prop, everything):
            classes[m.start()] = cls
    unassigned = {m.start() for m in regex.finditer(r"\p{Cn}", everything)}
    return classes, unassigned


def tiktoken_classes(root):
    node_dir = os.path.join(root, "tests", "node")
    out = subprocess.run(["node", os.path.join(node_dir, "tiktoken_ref.cjs"), "classes"], stdout=subprocess.PIPE,
                         check=True).stdout
    if len(out) != NCP:
        sys.exit("tiktoken_ref.cjs classes printed %d classes" % len(out))
    with open(os.path.join(node_dir, "node_modules", "tiktoken", "package.json")) as f:
        version = json.load(f)["version"]
    return [c - ord("0") for c in out], version


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    regex_only = "--regex-only" in sys.argv[1:]
    rx, unassigned = regex_classes()
    rx_ver = unicode_version(rx)
    spaces = {cp for cp in range(NCP) if rx[cp] == SPACE}
    if spaces != WHITE_SPACE:
        sys.exit("python3-regex's \\s differs from White_Space: %s" % sorted(hex(c) for c in spaces ^ WHITE_SPACE))
    try:
        deb = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "python3-regex"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL).stdout.decode() or regex.__version__
    except OSError:
        deb = regex.__version__

    if regex_only:
        classes = rx
        ver = rx_ver
        source = " *   Debian's python3-regex %s (Unicode %s)\n" % (deb, rx_ver)
    else:
        tk, tk_version = tiktoken_classes(root)
        bad = [cp for cp in range(NCP) if cp not in unassigned and tk[cp] != rx[cp]]
        if bad:
            sys.exit("tiktoken and python3-regex disagree on %d code points python3-regex knows, e.g. %s" %
                     (len(bad), ", ".join("U+%04X regex %d tiktoken %d" % (c, rx[c], tk[c]) for c in bad[:10])))
        classes = [tk[cp] if cp in unassigned else rx[cp] for cp in range(NCP)]
        ver = unicode_version(tk)
        added = sum(1 for cp in unassigned if tk[cp] != OTHER)
        source = (" *   Debian's python3-regex %s (Unicode %s) for every code point it knows, and\n"
                  " *   tiktoken %s (npm, tests/node; Unicode %s) for the %d letters and numbers assigned since;\n"
                  " *   the two agree on every code point both know.\n" % (deb, rx_ver, tk_version, ver, added))

    blocks, index, stage1 = [], {}, []
    for b in range(NCP // BLOCK):
        blk = tuple(classes[b * BLOCK:(b + 1) * BLOCK])
        if blk not in index:
            index[blk] = len(blocks)
            blocks.append(blk)
        stage1.append(index[blk])
    if len(blocks) > 256:
        sys.exit("too many distinct blocks for a uint8_t stage 1: %d" % len(blocks))

    head = ("/* Generated by scripts/gen_unicode_tables.py (Unicode %s) from\n%s"
            " * Do not edit: change the script and run it again. */\n" % (ver, source))

    h = [head,
         "#ifndef LLC_UNICODE_TABLES_H\n#define LLC_UNICODE_TABLES_H\n#include <stdint.h>\n\n",
         "#define LLC_UNICODE_VERSION \"%s\"\n" % ver,
         "/* Character classes of the Llama 3 pre-tokenizer regex: \\p{L}, \\p{N}, \\s (White_Space), other. */\n",
         "enum { LLC_UC_OTHER = %d, LLC_UC_LETTER = %d, LLC_UC_NUMBER = %d, LLC_UC_SPACE = %d };\n\n"
         % (OTHER, LETTER, NUMBER, SPACE),
         "#define LLC_UC_SHIFT %d\n" % SHIFT,
         "extern const uint8_t llc_uc_stage1[0x110000 >> LLC_UC_SHIFT];\n",
         "extern const uint8_t llc_uc_stage2[%d][1 << LLC_UC_SHIFT];\n\n" % len(blocks),
         "/* Class of code point cp (0 .. 0x10FFFF; anything above is other). */\n",
         "static inline int llc_uc_class(uint32_t cp) {\n",
         "    if (cp >= 0x110000) return LLC_UC_OTHER;\n",
         "    return llc_uc_stage2[llc_uc_stage1[cp >> LLC_UC_SHIFT]][cp & ((1u << LLC_UC_SHIFT) - 1)];\n",
         "}\n\n#endif\n"]

    c = [head, '#include "tokenizer/unicode_tables.h"\n\n',
         "const uint8_t llc_uc_stage1[0x110000 >> LLC_UC_SHIFT] = {\n"]
    for i in range(0, len(stage1), 24):
        c.append("    " + ",".join("%d" % v for v in stage1[i:i + 24]) + ",\n")
    c.append("};\n\nconst uint8_t llc_uc_stage2[%d][1 << LLC_UC_SHIFT] = {\n" % len(blocks))
    for blk in blocks:
        c.append("    {\n")
        for i in range(0, BLOCK, 64):
            c.append("        " + ",".join("%d" % v for v in blk[i:i + 64]) + ",\n")
        c.append("    },\n")
    c.append("};\n")

    out = os.path.join(root, "src", "tokenizer")
    with open(os.path.join(out, "unicode_tables.h"), "w") as f:
        f.write("".join(h))
    with open(os.path.join(out, "unicode_tables.c"), "w") as f:
        f.write("".join(c))
    print("unicode_tables: Unicode %s, %d blocks of %d" % (ver, len(blocks), BLOCK))


if __name__ == "__main__":
    main()
