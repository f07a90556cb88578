import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub look-ups (and no 45 s of retries) in tests
# one cache root for the session, never the user's (~/.cache/ueo_studio): a feature stored by an earlier session
# must not spare a test the pass it checks (the Ray workers the tests start inherit it)
os.environ.setdefault("UEO_CACHE", __import__("tempfile").mkdtemp(prefix="ueo-test-cache-"))

from helpers import make_folder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("UEO_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray for the whole session (2 run slots: a lesson trains two runs at once), stopped at the
    end whatever happens: the app's runs and lessons are jobs on it (UEO_RAY_ADDRESS), and so are the browser
    tests' server's."""
    import ray
    from helpers import kill_ray_cluster, start_ray_cluster
    from ueo_core import cluster
    address, temp_dir = start_ray_cluster(slots=2)
    old = os.environ.get("UEO_RAY_ADDRESS")
    os.environ["UEO_RAY_ADDRESS"] = address
    try:
        cluster.connect()
        yield address
    finally:
        ray.shutdown()
        kill_ray_cluster(temp_dir)
        if old is None:
            os.environ.pop("UEO_RAY_ADDRESS", None)
        else:
            os.environ["UEO_RAY_ADDRESS"] = old


@pytest.fixture(scope="session")
def tiny():
    from ueo_core.models import load_model
    return load_model("ueo-tiny", seed=0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One feature cache for the module (UEO_CACHE, as the app's: an exploration fills it, a search reads it)."""
    old = os.environ.get("UEO_CACHE")
    os.environ["UEO_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield Path(os.environ["UEO_CACHE"])
    if old is None:
        os.environ.pop("UEO_CACHE", None)
    else:
        os.environ["UEO_CACHE"] = old


def tiny_ueo_run(root: Path, out: Path, prior=("red", "green", "blue"), seed: int = 3) -> Path:
    """A one-epoch UEO run of the random-init tiny model on 24 images (yellow unknown), into ``out``."""
    from ueo_core.cli import main
    data = make_folder(root / "data", classes=("red", "green", "blue", "yellow"), per_class=6, seed=seed)
    assert main(["train", str(data), "--prior", ",".join(prior), "--model", "ueo-tiny", "--pretrained", "none",
                 "--batch-size", "8", "--epochs", "1", "--lr-prompt", "0.05", "--lr-visual", "0.05",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture
def folder(tmp_path):
    """red/green/blue/yellow class folders, 6 images each."""
    return make_folder(tmp_path / "data", classes=("red", "green", "blue", "yellow"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end tests (minutes); run in CI")
    config.addinivalue_line("markers", "shared_data: needs ../shared/data (skipped when absent)")
