"""The test helpers themselves: a comparison that cannot fail would let every test that uses it pass."""
import math
import re

import pytest

from helpers import assert_close_tree


def test_assert_close_tree_compares_every_nested_value():
    m = {"gacc": 0.5, "class_shares": [0.25, 0.75], "collapsed": False, "auroc": math.nan, "name": "ueo"}
    assert_close_tree(m, {**m, "gacc": 0.5 + 1e-9}, nan_ok=True)
    for other, where in (({**m, "class_shares": [0.25, 0.70]}, "class_shares[1]"),
                         ({**m, "class_shares": [0.25]}, "class_shares"),
                         ({**m, "collapsed": True}, "collapsed"),
                         ({**m, "auroc": 0.9}, "auroc"),
                         ({**m, "name": "im"}, "name"),
                         ({k: v for k, v in m.items() if k != "gacc"}, "keys")):
        with pytest.raises(AssertionError, match=re.escape(where) if where != "keys" else "keys"):
            assert_close_tree(other, m, nan_ok=True)
