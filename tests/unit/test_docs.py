from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_contract_copy_in_docs_is_the_wire_contract():
    upstream = ROOT.parent / "shared" / "spec" / "CONTRACT.md"
    if upstream.exists():  # a checkout outside the workplace has only the copy
        assert (ROOT / "docs" / "contract.md").read_text() == upstream.read_text()
    assert "oms.events" in (ROOT / "docs" / "contract.md").read_text()


def test_the_readme_names_the_two_setup_commands_and_every_doc_it_links_exists():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    for line in readme.splitlines():
        for part in line.split("](")[1:]:
            target = part.split(")")[0]
            if not target.startswith("http"):
                assert (ROOT / target).exists(), target
