"""Session glue for the Streamlit pages, in one name the pages use (``state.…``). No maths here: the engine
(``ueo_core``) does the work; these modules remember what the user chose. Which file holds what:

- ``workspace.py``: the server's workspaces root (``workspace.WORKSPACES``), the per-browser workspace (token,
  remembered choices, uploads) and what a session may read;
- ``choices.py``: the chosen data and model, and a teacher's link that carries them;
- ``jobs.py``: this session's runs, lessons and explorations, as jobs on Ray (``ueo_core.jobs``);
- ``catalogue.py``: the shared data the server offers, and which source folders fit a target.
"""
from .catalogue import SHARED_DATA, shared_imagenette, shared_pacs, source_options  # noqa: F401
from .choices import (DEFAULT_DATA, DEFAULT_MODEL, LESSON_SETTING_KEYS, data_choice, image_set,  # noqa: F401
                      lesson_link, loaded_model, model_choice, model_fit_warning, open_lesson_link,
                      set_data_choice, set_model_choice)
from .jobs import (Exploration, active_lesson, active_run_id, anything_running, exploration, is_running,  # noqa: F401
                   job, lesson_estimate, lesson_status, live_in_workspace, resume_run, run_config, run_error,
                   run_label,
                   start_lesson, start_run, stop_everything, stop_run)
from .jobs import (Sorting, latest_sort, place_sorted, sort_groups, sort_path, sort_threshold,  # noqa: F401,E402
                   sort_zip, sorting, sorts_dir, start_sort, writable_path)
from .jobs import search  # noqa: F401,E402
from .workspace import (allowed_roots, check_path, friendly, new_upload_dir, prune_workspaces,  # noqa: F401
                        redact, remember, retention_note, run_path, runs_dir, save_checkpoint_upload,
                        shapes_root, workspace)
from ueo_core.runs import LESSON_ID, RUN_ID  # noqa: F401,E402
