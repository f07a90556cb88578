"""The README is what a newcomer reads first, and the docs site (mkdocs.yml + docs/) holds the reference. Both rot
quietly: a renamed page or heading leaves a dead link, a renamed flag leaves a command that no longer runs, and a
README grows back into a manual. These tests build the site as CI does (`mkdocs build --strict`), keep the README
short, and check every relative link and every documented command against the repository."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

from conftest import ROOT

README_MAX_LINES = 200
DOCS = ROOT / "docs"


def markdown_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def without_code(text: str) -> str:
    """The text with fenced blocks and inline code blanked out: a link inside code is an example, not a link."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def code_of(text: str) -> list[str]:
    """Every line of the fenced blocks and every inline code span, where the commands are written."""
    lines = [line for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
             for line in block.splitlines()]
    return lines + re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))


def anchors(path: Path) -> set[str]:
    """The ids of a page's headings, as MkDocs makes them (Python-Markdown's toc)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {slugify(h.strip(), "-") for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Relative links and images of one Markdown file whose file is missing (or outside the repository), or whose
    #anchor is no heading of the page it names."""
    problems = []
    for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", without_code(path.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.is_relative_to(root.resolve()) or not dest.exists():
            problems.append(f"{path.relative_to(root)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{path.relative_to(root)}: {target} (no such heading)")
    return problems


def build_site(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about its successor is not our warning
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, env=env, timeout=300)


# ------------------------------------------------------------------------------------------------- the site
def test_the_docs_site_builds_strictly(tmp_path):
    """What CI runs: any warning (a broken link or anchor, a page outside the nav) fails the build."""
    done = build_site(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    assert "WARNING" not in done.stderr, done.stderr
    assert (tmp_path / "site" / "index.html").exists() and (tmp_path / "site" / "speed" / "index.html").exists()


@pytest.mark.parametrize("breakage", [
    ("speed.md", "\nSee [the moved page](no-such-page.md).\n"),
    ("speed.md", "\nSee [the world table](world.md#no-such-heading).\n"),
    ("orphan.md", "# A page no one put in the nav\n"),
])
def test_the_strict_build_fails_on_a_broken_link_or_a_page_outside_the_nav(tmp_path, breakage):
    """The site's settings (validation in mkdocs.yml) are what turn these into warnings: without them, a missing
    anchor or a page outside the nav builds silently, and --strict has nothing to fail on."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    name, text = breakage
    with open(tmp_path / "docs" / name, "a") as f:
        f.write(text)
    done = build_site(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0, f"the build passed with {text!r} in {name}:\n{done.stderr}"
    assert any(w in done.stderr for w in ("no-such-page", "no-such-heading", "orphan")), done.stderr  # that one
    assert "No module named" not in done.stderr, done.stderr  # (the methods table's hook found the engine)


def test_the_methods_table_is_made_from_the_registry(tmp_path):
    """docs/methods.md's table of methods and options is written at build time from each registry entry
    (docs/hooks.py): every method and every option's flag, default and official source are on the built page."""
    from ueo_core.methods import METHODS
    done = build_site(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "site" / "methods" / "index.html").read_text()
    assert "methods-and-options" not in page  # the marker was replaced
    for name, m in METHODS.items():
        assert f"<code>{name}</code>" in page, name
        for o in m.options:
            assert f"<code>{o.flag}</code>" in page and o.help.split(" (")[0][:30] in page, (name, o.name)


# ------------------------------------------------------------------------------------------------ the README
def test_the_readme_stays_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move the reference into docs/")


def test_the_readme_shows_the_two_commands_and_links_every_docs_page():
    text = (ROOT / "README.md").read_text()
    assert "```bash\nbash scripts/app.sh\n```" in text and "```bash\nbash scripts/test.sh\n```" in text
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in re.findall(r"\]\((docs/[^)#\s]+)", text)}
    pages = {p.resolve() for p in DOCS.rglob("*.md")}
    assert pages <= linked, f"docs pages the README does not link: {sorted(p.name for p in pages - linked)}"


# ------------------------------------------------------------------------------------------------- links
def test_every_relative_link_in_the_readme_and_the_docs_resolves():
    problems = [p for path in markdown_files() for p in broken_links(path)]
    assert not problems, "\n".join(problems)


def test_the_link_check_catches_a_missing_file_a_missing_heading_and_a_way_out(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Its part\n")
    (tmp_path / "pic.png").write_bytes(b"")
    good = ("[a](docs/a.md) [part](docs/a.md#its-part) ![pic](pic.png) [web](https://example.org/x.md) "
            "`[code](missing.md)`\n\n```\n[block](missing.md)\n```\n## Here\n[here](#here)\n")
    (tmp_path / "README.md").write_text(good)
    assert broken_links(tmp_path / "README.md", tmp_path) == []
    (tmp_path / "README.md").write_text(good + "[b](docs/b.md) [part](docs/a.md#gone) ![p](gone.png) "
                                                "[out](../outside.md) [there](#there)\n")
    assert [p.split(": ", 1)[1] for p in broken_links(tmp_path / "README.md", tmp_path)] == [
        "docs/b.md (no such file)", "docs/a.md#gone (no such heading)", "gone.png (no such file)",
        "../outside.md (no such file)", "#there (no such heading)"]


# ---------------------------------------------------------------------------------------------- commands
def documented_commands() -> list[tuple[str, str]]:
    """(file, command) for every `python -m ueo_core …`, `bash scripts/…` and `python bench|scripts/….py` line in
    the README's and the docs' code."""
    found = []
    for path in markdown_files():
        for line in code_of(path.read_text()):
            for part in re.split(r"&&|;", line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""):
                part = part.strip()
                bare = re.fullmatch(r"python -m ueo_core( \w+)?", part)  # the command's name in a sentence
                if re.search(r"-m ueo_core\b|^bash scripts/|^python (bench|scripts)/", part) and not bare:
                    found.append((str(path.relative_to(ROOT)), part))
    return found


def test_every_documented_command_names_a_script_and_options_that_exist():
    """A renamed flag or bench leaves the docs promising a command that fails: each `python -m ueo_core …` line is
    parsed by the CLI's own parser (optional parts in [brackets] left out), each script must exist."""
    from ueo_core.cli_parser import build_parser
    parser = build_parser()
    commands = documented_commands()
    assert len(commands) >= 30, commands  # the check reads the code it is meant to read
    problems = []
    for where, command in commands:
        if "ueo_core" in command:
            args = shlex.split(re.sub(r"\[[^\]]*\]", "", command.split("-m ueo_core", 1)[1]))
            try:
                parser.parse_args(args)
            except SystemExit as e:  # argparse's way to refuse; 0 is --help
                if e.code:
                    problems.append(f"{where}: {command}")
        else:
            script = command.split()[1]
            if "<" not in script and not (ROOT / script).is_file():  # bench/<name>.py stands for any bench
                problems.append(f"{where}: {command} ({script} does not exist)")
    assert not problems, "documented commands that no longer parse or run:\n" + "\n".join(problems)
