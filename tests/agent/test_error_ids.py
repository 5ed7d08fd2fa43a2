"""Every stable error id the code can print is listed in the docs a user reads (docs/errors.md, and
the splitbrain package's ERRORS.md): an id nobody can look up is a broken promise."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ("agent", "kernel", "splitcore")
DOCS = ("docs/errors.md", "splitcore/python/ERRORS.md")
ID = re.compile(r"(?:\[splitbrain\.(?=[a-z_]+\])|errc::)([a-z][a-z_]*)")


def ids_in_code():
    found = {}
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".cpp", ".hpp", ".py"}:
                for match in ID.finditer(path.read_text(encoding="utf-8")):
                    found.setdefault(match.group(1), path.relative_to(ROOT))
    found.pop("xxx", None)  # the placeholder in a docstring that explains the format
    return found


def test_every_error_id_in_the_code_is_documented():
    documented = "\n".join((ROOT / doc).read_text(encoding="utf-8") for doc in DOCS)
    used = ids_in_code()
    assert len(used) > 20, "the scan found too few ids to be looking in the right place"
    missing = {name: str(where) for name, where in used.items() if f"`{name}`" not in documented
               and f"[splitbrain.{name}]" not in documented}
    assert not missing, f"error ids used but not in {' or '.join(DOCS)}: {missing}"
