"""Sums the JUnit reports of ctest and pytest (the main ones and the sanitizer builds' ctest-*.xml / pytest-*.xml)
and the fuzz and sanitizer results (lines "NAME passed" / "NAME failed") into one line, after the names of the tests
that failed (CI shows only the end of the output)."""
import pathlib
import re
import sys
import xml.etree.ElementTree as ET

reports = pathlib.Path(sys.argv[1])
seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 0
passed = failed = skipped = 0
missing = []
failures = []
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
        for case in s.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failures.append(f"{name}: {case.get('classname', '')} {case.get('name', '')}".rstrip())
for results in (reports / "fuzz.txt", reports / "sanitizers.txt"):
    if not results.exists():
        continue
    for line in results.read_text().splitlines():
        if line.endswith(" passed"):
            passed += 1
        else:
            failed += 1
            failures.append(f"{results.name}: {line}")
            # A fuzz target's crash: its error, the frames in ember's code and the input that made it.
            log = reports / (line.split()[0] + ".log")
            if log.exists():
                for text in log.read_text(errors="replace").splitlines():
                    if re.search(r"ERROR:|SUMMARY:|Base64:|#\d+ .* in (ember::|LLVMFuzzerTestOneInput)", text):
                        failures.append("    " + text.strip()[:300])
if missing:
    print("missing reports: " + ", ".join(missing))
    failed += len(missing)
for line in failures:
    print(line if line.startswith(" ") else "FAILED " + line)
print(f"(took {seconds // 60} min {seconds % 60} s)")
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or missing else 0)
