"""Sums the JUnit reports of ctest and pytest (the main ones and the sanitizer builds' ctest-*.xml / pytest-*.xml)
and the fuzz and sanitizer results (lines "NAME passed" / "NAME failed") into one line."""
import pathlib
import sys
import xml.etree.ElementTree as ET

reports = pathlib.Path(sys.argv[1])
seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 0
passed = failed = skipped = 0
missing = []
sanitized = sorted(p.name for pattern in ("ctest-*.xml", "pytest-*.xml") for p in reports.glob(pattern))
for name in ["ctest.xml", "pytest.xml", *sanitized]:
    path = reports / name
    if not path.exists():
        missing.append(name)
        continue
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for s in suites:
        total = int(s.get("tests", 0))
        f = int(s.get("failures", 0)) + int(s.get("errors", 0))
        k = int(s.get("skipped", 0)) + int(s.get("disabled", 0) or 0)
        passed += total - f - k
        failed += f
        skipped += k
for results in (reports / "fuzz.txt", reports / "sanitizers.txt"):
    if not results.exists():
        continue
    for line in results.read_text().splitlines():
        if line.endswith(" passed"):
            passed += 1
        else:
            failed += 1
if missing:
    print("missing reports: " + ", ".join(missing))
    failed += len(missing)
print(f"(took {seconds // 60} min {seconds % 60} s)")
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or missing else 0)
