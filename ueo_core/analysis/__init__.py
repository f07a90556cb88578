"""What the app shows, computed here (pages only lay it out), one module a kind of question:

- ``predictions``: a run's predictions at a threshold, galleries of rejections, per-class accuracy;
- ``comparison``: runs side by side;
- ``verdicts``: sentences about a run, each computed from its numbers;
- ``lesson_words``: the lesson's sentences, its methods named by the registry (``Method.plain``);
- ``teaching``: the Learn page's toy maths, with the engine's own losses;
- ``changes``: what adaptation changed, the zero-shot decisions beside the adapted ones.

(A run's embeddings are ``ueo_core.explore``.)
"""
from .changes import Changes, changes, run_changes, zero_shot_threshold
from .comparison import COMPARE_KEYS, compare_summary, compare_table, list_runs, run_curves, shares_note
from .predictions import Predictions, acceptance_summary, read_predictions, rejection_summary
from .teaching import entropy_of, softmax, toy_descent, toy_descent_note, ueo_batch_terms
from .lesson_words import lesson_summary, plain_name
from .verdicts import builtin_model_warning, chance_note, entropy_note, run_verdict, shown_gain, shown_rate

__all__ = ["COMPARE_KEYS", "compare_summary", "compare_table", "list_runs", "run_curves", "shares_note",
           "Predictions", "acceptance_summary", "read_predictions", "rejection_summary", "entropy_of", "softmax",
           "toy_descent", "toy_descent_note", "ueo_batch_terms", "builtin_model_warning", "chance_note",
           "entropy_note", "run_verdict", "shown_gain", "shown_rate",
           "Changes", "changes", "run_changes", "zero_shot_threshold", "lesson_summary", "plain_name"]
