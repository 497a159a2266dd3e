"""Compares two JUnit XML reports of the same borg test selection, test by test.

usage: compare.py LABEL PYTHON.xml ENGINE.xml

Prints the totals of each run, then every test whose outcome differs. Exits 1 when a test
that passes against Python `borg serve` does not pass against the engine.
"""

import sys
import xml.etree.ElementTree as ET


def outcomes(path):
    result = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            result[name] = "failed"
        elif "skipped" in kinds:
            result[name] = "skipped"
        else:
            result[name] = "passed"
    return result


def totals(runs):
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for outcome in runs.values():
        counts[outcome] += 1
    return f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"


def main():
    label, python_xml, engine_xml = sys.argv[1:4]
    python, engine = outcomes(python_xml), outcomes(engine_xml)
    print(f"{label}: python borg serve: {totals(python)}")
    print(f"{label}: borg-gate serve:   {totals(engine)}")
    regressions = 0
    for name in sorted(set(python) | set(engine)):
        before, after = python.get(name, "absent"), engine.get(name, "absent")
        if before != after:
            print(f"  {name}: python {before}, engine {after}")
            if before == "passed":
                regressions += 1
    print(f"{label}: {regressions} test(s) pass with python borg serve and not with borg-gate serve")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
