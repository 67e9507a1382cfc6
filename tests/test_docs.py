"""The docs are true to the code (issue #13, point 7).

Every command of the ``campaigns`` CLI and every ``DISPATCHER_*`` setting the
code reads appears in README.md or docs/, and everything of either kind the
docs name exists. Each command's ``--help`` ends with an example and names the
settings it reads. Docs cite only files inside the repository.
"""

from __future__ import annotations

import re
import subprocess

import click
import pytest
from click.testing import CliRunner

from campaigns.operators.cli import main
from campaigns.settings import ENV_PREFIX, setting_names
from tests.support import CAMPAIGNS_BIN, ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = sorted(main.commands)
TYPO_EXAMPLES = {"DISPATCHER_REDIS_URI"}
"""The docs' example of a misspelt setting the CLI refuses by name."""
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)
"""Code spans and blocks: where the docs show a command or a setting."""


def docs_text() -> str:
    return "\n".join(path.read_text() for path in DOCS)


def code_in_docs() -> str:
    return "\n".join(CODE.findall(docs_text()))


def test_every_command_is_documented() -> None:
    code = code_in_docs()
    missing = [c for c in COMMANDS if not re.search(rf"\bcampaigns {re.escape(c)}\b", code)]
    assert missing == [], f"commands missing from README.md and docs/: {missing}"


def test_every_documented_command_exists() -> None:
    # "campaigns import ..." in "from campaigns import x" is Python, not a command.
    named = set(re.findall(r"(?<![\w/.-])(?<!from )campaigns ([a-z][a-z-]*)", code_in_docs()))
    assert named - set(COMMANDS) == set(), "docs name commands the CLI does not have"


def test_every_setting_is_documented() -> None:
    """By its full name, or by its short name in backticks (the settings table)."""
    text = docs_text()
    missing = [
        name
        for name in setting_names()
        if name not in text
        and f"`{name.removeprefix(ENV_PREFIX)}`" not in text
        and not re.search(rf"`[^`]*\b{name.removeprefix(ENV_PREFIX)}\b[^`]*`", text)
    ]
    assert missing == [], f"settings missing from README.md and docs/: {missing}"


def test_every_documented_setting_exists() -> None:
    named = set(re.findall(r"\bDISPATCHER_[A-Z0-9_]*[A-Z0-9]\b", docs_text()))
    unknown = named - set(setting_names()) - TYPO_EXAMPLES
    assert unknown == set(), "docs name settings the code does not read"


def test_docs_cite_only_files_in_the_repository() -> None:
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)", path.read_text()):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{path.name} links to {target}"
        assert "../shared" not in path.read_text(), f"{path.name} cites a file outside the repo"


@pytest.mark.parametrize("name", COMMANDS)
def test_help_has_an_example_and_names_its_settings(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    command = main.commands[name]
    assert isinstance(command, click.Command)
    assert "Example:" in result.output, result.output
    assert re.search(rf"\$ (\S+=\S+ )*campaigns {re.escape(name)}\b", result.output)
    assert "Reads " in result.output
    for setting in re.findall(r"DISPATCHER_[A-Z_]*[A-Z]", result.output):
        assert setting in setting_names(), setting


def test_the_real_binary_shows_the_example() -> None:
    result = subprocess.run(
        [CAMPAIGNS_BIN, "status", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "$ campaigns status spring-renewals --json" in result.stdout
    assert "DESIGN.md" not in result.stdout


def test_readme_starts_with_its_title_then_the_two_commands() -> None:
    """The title, then exactly the two commands that work on a fresh machine."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[0] == "# Campaign dispatcher"
    block = lines[lines.index("```") + 1 : lines.index("```", lines.index("```") + 1)]
    assert lines.index("```") == 2
    assert [line.split("#")[0].strip() for line in block] == ["make demo", "make test"]


def test_benchmark_prose_matches_its_table() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    table = re.search(r"\*\*ratio naive / atomic\*\* \| \*\*([0-9.]+)x\*\*", text)
    assert table is not None
    prose = re.search(r"atomic safety costs about ([0-9.]+)x", text)
    assert prose is not None and prose.group(1) == table.group(1)
