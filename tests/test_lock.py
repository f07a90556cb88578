"""requirements.txt (the ranges people read) and requirements.lock (what scripts/setup.sh installs, generated from
it by pip-compile) must agree, and the suite must run on what the lock says."""
import re
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT


def parse_requirements(text: str) -> dict[str, Requirement]:
    reqs = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            r = Requirement(line)
            reqs[canonicalize_name(r.name)] = r
    return reqs


def parse_lock(text: str) -> dict[str, dict]:
    """name -> {"version", "via": [what asked for it]} from pip-compile's output."""
    pins, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if m:
            current = canonicalize_name(m.group(1))
            pins[current] = {"version": m.group(2), "via": []}
        elif current and line.startswith(" ") and line.strip().startswith("#"):  # "    # via x"
            via = line.strip().lstrip("#").strip()
            via = via[len("via"):].strip() if via.startswith("via") else via
            if via:
                pins[current]["via"].append(via)
        elif line.strip() and not line.startswith("#"):
            raise AssertionError(f"unexpected line in requirements.lock: {line!r}")
    return pins


def disagreements(req_text: str, lock_text: str) -> list[str]:
    reqs, pins = parse_requirements(req_text), parse_lock(lock_text)
    problems = []
    for name, r in reqs.items():
        if name not in pins:
            problems.append(f"{name} is in requirements.txt but not in the lock")
        elif not r.specifier.contains(pins[name]["version"], prereleases=True):
            problems.append(f"{name}=={pins[name]['version']} in the lock is outside requirements.txt's {r.specifier}")
    for name, pin in pins.items():
        direct = "-r requirements.txt" in pin["via"]
        if direct and name not in reqs:
            problems.append(f"{name} is in the lock as a requirement but no longer in requirements.txt")
        if not pin["via"]:
            problems.append(f"{name} is in the lock but nothing asks for it")
        for parent in pin["via"]:
            if parent != "-r requirements.txt" and canonicalize_name(parent) not in pins:
                problems.append(f"{name} is in the lock for {parent}, which is not in the lock")
    return problems


def test_the_lock_and_requirements_txt_agree():
    problems = disagreements((ROOT / "requirements.txt").read_text(), (ROOT / "requirements.lock").read_text())
    assert not problems, "regenerate the lock (README, 'Reproducible installs'):\n" + "\n".join(problems)


def test_the_check_catches_each_kind_of_disagreement():
    req = "torch==2.14.1\npillow>=11.3  # comment\n"
    lock = ("pillow==13.0.0\n    # via -r requirements.txt\ntorch==2.14.1\n    # via -r requirements.txt\n"
            "filelock==3.0\n    # via torch\n")
    assert disagreements(req, lock) == []
    assert disagreements(req + "ray>=2\n", lock) == ["ray is in requirements.txt but not in the lock"]
    assert disagreements(req.replace(">=11.3", ">=14"), lock) == [
        "pillow==13.0.0 in the lock is outside requirements.txt's >=14"]
    assert disagreements("torch==2.14.1\n", lock) == [
        "pillow is in the lock as a requirement but no longer in requirements.txt"]
    assert disagreements(req, lock + "orphan==1.0\n") == ["orphan is in the lock but nothing asks for it"]
    assert disagreements(req, lock.replace("# via torch", "# via gone")) == [
        "filelock is in the lock for gone, which is not in the lock"]


def test_the_suite_runs_on_the_locked_versions():
    """scripts/setup.sh installs the lock into a virtual environment of its own; the tests run there. A package
    of another version means the suite is running on something the lock did not choose."""
    pins = parse_lock((ROOT / "requirements.lock").read_text())
    wrong = {}
    for name, pin in pins.items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != pin["version"]:
            wrong[name] = (have, pin["version"])
    assert not wrong, f"installed != locked (run bash scripts/setup.sh): {wrong}"
