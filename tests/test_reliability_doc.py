"""RELIABILITY.md cites the test behind every claim: each cited test file and test exists."""

from __future__ import annotations

import re

from testbed_yaml import REPO

CITATION = re.compile(r"`(test_\w+\.py)?(::\w+)?(\[[^\]]*\])?`")


def test_every_test_that_reliability_md_cites_exists():
    text = (REPO / "RELIABILITY.md").read_text()
    cited, file = [], None
    for row in text.splitlines():
        for match in CITATION.finditer(row):
            file = match.group(1) or file  # `::name` continues the last file named
            if match.group(1) or match.group(2):
                cited.append((file, (match.group(2) or "")[2:]))
    assert len(cited) > 30
    for file, test in cited:
        assert file is not None and (REPO / "tests" / file).exists(), file
        if test:
            source = (REPO / "tests" / file).read_text()
            assert re.search(rf"def {test}\(", source), f"{file}::{test}"
