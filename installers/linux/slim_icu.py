"""Rebuild Qt's ICU data library with only what an English-UI image viewer needs (Linux).

PySide6's Linux wheels link Qt Core against ICU, whose data library (libicudata.so.73, 31 MB)
holds collation, display names, currencies, units and time-zone names for ~800 locales, break
iterator dictionaries for Chinese/Japanese/Thai/Khmer/Lao/Burmese and ~200 legacy code-page
converters. Qt uses ICU for collation, locale-aware case mapping and legacy codecs; its own
locale data (not ICU's) formats numbers and dates. This keeps the root and English locales, all
locale-independent tables (Unicode properties, normalisation, break rules, the root collation
table, time-zone rules), and drops the rest.

Usage (called by installers/mura.spec; needs ``icupkg`` from icu-devtools and ``gcc``):
    python slim_icu.py ORIGINAL_LIBICUDATA OUT_DIR  ->  OUT_DIR/libicudata.so.<N>
Exits non-zero, leaving nothing in OUT_DIR, if a tool is missing or a step fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

KEEP_LOCALES = re.compile(r"^(root|en|en_US|en_GB|en_001|en_150)\.res$")
LOCALE_RES = re.compile(r"^[a-z]{2,3}(_[A-Za-z0-9]*)*\.res$")  # de.res, de_DE.res, de__PHONEBOOK.res
LOCALE_TREES = ("curr", "lang", "region", "unit", "zone", "coll", "rbnf", "translit")
KEEP_CONVERTERS = re.compile(r"^ibm-5348_P100-1997\.cnv$")  # windows-1252; UTF/Latin-1 are built in


def keep(item: str) -> bool:
    parts = item.split("/")
    name = parts[-1]
    if len(parts) == 1:
        if name.endswith(".cnv"):
            return bool(KEEP_CONVERTERS.match(name))
        if LOCALE_RES.match(name) and name not in ("pool.res", "res_index.res"):
            return bool(KEEP_LOCALES.match(name))
        return True
    tree = parts[0]
    if tree == "brkitr":
        return not name.endswith(".dict") and (
            not LOCALE_RES.match(name) or bool(KEEP_LOCALES.match(name)) or name == "res_index.res")
    if tree in LOCALE_TREES:
        if name in ("pool.res", "res_index.res") or not LOCALE_RES.match(name):
            return True
        return bool(KEEP_LOCALES.match(name))
    return True


def _symbol(lib: Path) -> tuple[str, int, int]:
    """(name, file offset, size) of the icudtNN_dat data symbol."""
    syms = subprocess.run(["readelf", "--dyn-syms", "-W", str(lib)], capture_output=True,
                          text=True, check=True).stdout
    m = re.search(r"\s([0-9a-f]+)\s+(0x[0-9a-f]+|\d+)\s+OBJECT\s+GLOBAL\s+\w+\s+(\d+)\s+(icudt\d+_dat)",
                  syms)
    if not m:
        raise SystemExit(f"slim_icu: no icudtNN_dat symbol in {lib}")
    addr, size, shndx, name = int(m.group(1), 16), int(m.group(2), 0), int(m.group(3)), m.group(4)
    secs = subprocess.run(["readelf", "-S", "-W", str(lib)], capture_output=True, text=True,
                          check=True).stdout
    sm = re.search(rf"\[\s*{shndx}\]\s+\S+\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)", secs)
    if not sm:
        raise SystemExit(f"slim_icu: section {shndx} not found in {lib}")
    sec_addr, sec_off = int(sm.group(1), 16), int(sm.group(2), 16)
    return name, addr - sec_addr + sec_off, size


def main(argv: list[str]) -> int:
    lib, out = Path(argv[0]), Path(argv[1])
    for tool in ("icupkg", "gcc", "readelf"):
        if not shutil.which(tool):
            print(f"slim_icu: {tool} not found: keeping the full ICU data", file=sys.stderr)
            return 3
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    name, off, size = _symbol(lib)
    ver = name[len("icudt"):-len("_dat")]
    full = work / f"icudt{ver}l.dat"
    with lib.open("rb") as fh:
        fh.seek(off)
        full.write_bytes(fh.read(size))
    items = subprocess.run(["icupkg", "-l", str(full)], capture_output=True, text=True,
                           check=True).stdout.split()
    drop = [i for i in items if not keep(i)]
    (work / "drop.txt").write_text("\n".join(drop) + "\n")
    # icupkg names the package after the output file's base name, and ICU looks items up as
    # "icudt<N>l/<item>": the slim file must carry the original name.
    (work / "slim").mkdir(exist_ok=True)
    slim = work / "slim" / full.name
    # --ignore-deps: brkitr/root.res names the CJK/Thai dictionaries; ICU falls back to
    # rule-based breaking when a dictionary is absent, which is all an English UI needs.
    subprocess.run(["icupkg", "--ignore-deps", "-r", str(work / "drop.txt"), str(full), str(slim)],
                   check=True, cwd=work, capture_output=True)
    asm = work / "icudata.S"
    asm.write_text(
        "\t.section .rodata\n\t.global {n}\n\t.type {n}, @object\n\t.balign 16\n{n}:\n"
        '\t.incbin "{f}"\n\t.size {n}, . - {n}\n\t.section .note.GNU-stack,"",@progbits\n'
        .format(n=name, f=f"slim/{slim.name}"))
    so = out / lib.name
    subprocess.run(["gcc", "-shared", "-nostdlib", f"-Wl,-soname,{lib.name}", "-o", str(so),
                    str(asm)], check=True, cwd=work)
    print(f"slim_icu: {len(items) - len(drop)} of {len(items)} ICU items kept; "
          f"{size / 2**20:.1f} MiB -> {so.stat().st_size / 2**20:.1f} MiB ({so})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
