"""The policy grid: flat indices <-> threshold policies, and the paper's 1080-policy space."""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pyarrow as pa
import pytest

from agents.policy_space import PAPER_SPACE, Policy, PolicySpace
from drivers.rtctl.messages import Thresholds, ThresholdUpdate
from hil.base.errors import ThresholdError
from hil.base.model import make_caps
from hil.base.thresholds import POLICY, POLICY_FIELDS
from hil.schema import ROUND_SCHEMA

SMALL = PolicySpace(
    dl_gain_db=(0.0, -6.0),
    dl_max_mcs=(28, 0, 10),
    dl_prb_ratio=(1.0, 0.5),
    ul_max_mcs=(5,),
    ul_prb_ratio=(0.25, 0.75),
)


def test_paper_space_is_the_evaluation_grid_of_the_bsvbs_paper():
    assert PAPER_SPACE.size == 1080
    assert PAPER_SPACE.dl_gain_db == (0.0,)
    assert PAPER_SPACE.dl_max_mcs == (0, 5, 11, 16, 22, 27)
    assert PAPER_SPACE.dl_prb_ratio == (0.0, 0.2, 0.6, 0.8, 1.0)
    assert PAPER_SPACE.ul_max_mcs == (0, 5, 9, 14, 18, 23)
    assert PAPER_SPACE.ul_prb_ratio == (0.01, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert PAPER_SPACE.shape == (1, 6, 5, 6, 6)


def test_policy_fields_are_the_recorded_threshold_keys_in_the_papers_order():
    assert Policy._fields == POLICY_FIELDS
    assert tuple(f for f in PolicySpace.__dataclass_fields__) == POLICY_FIELDS
    for protocol in (Thresholds, ThresholdUpdate):  # the vBS's keys: the policy's and `ue`
        assert set(protocol.model_fields) == {*POLICY_FIELDS, "ue"}
    caps = set(inspect.signature(make_caps).parameters) - {"cell", "ue_dl_max_prb", "ue_ul_max_prb"}
    assert caps == set(POLICY_FIELDS)  # the emulator's caps take the same thresholds


@pytest.mark.parametrize("threshold", POLICY, ids=lambda t: t.name)
def test_the_policy_space_and_the_protocol_take_the_same_values_of_each_threshold(threshold):
    """Both read hil/base/thresholds.py: a policy the space allows, the vBS accepts."""
    step = 1 if threshold.integer else 0.5
    for value, ok in ((threshold.low, True), (threshold.high, True),
                      (threshold.low - step, False), (threshold.high + step, False)):
        value = int(value) if threshold.integer else float(value)
        grid = {f: getattr(SMALL, f) for f in POLICY_FIELDS} | {threshold.name: (value,)}
        in_space = _accepts(PolicySpace, **grid)
        at_vbs = _accepts(ThresholdUpdate.parse, {threshold.name: value})
        assert in_space == at_vbs == ok, (threshold.name, value)
    field = ROUND_SCHEMA.field(f"policy_{threshold.name}")
    assert pa.types.is_integer(field.type) == threshold.integer


def _accepts(make, *args, **kwargs) -> bool:
    try:
        make(*args, **kwargs)
    except (ValueError, TypeError, ThresholdError):
        return False
    return True


def test_indices_run_in_c_order_over_p_d_m_d_b_d_m_u_b_u():
    assert SMALL.shape == (2, 3, 2, 1, 2)
    assert SMALL.size == 24
    assert SMALL.policy(0) == Policy(0.0, 28, 1.0, 5, 0.25)
    assert SMALL.policy(1) == Policy(0.0, 28, 1.0, 5, 0.75)  # last dimension moves fastest
    assert SMALL.policy(2) == Policy(0.0, 28, 0.5, 5, 0.25)
    assert SMALL.policy(12) == Policy(-6.0, 28, 1.0, 5, 0.25)  # first dimension slowest
    assert SMALL.policy(23) == Policy(-6.0, 10, 0.5, 5, 0.75)


def test_every_index_round_trips_and_the_policies_are_the_whole_product():
    policies = [SMALL.policy(i) for i in range(SMALL.size)]
    assert [SMALL.index(p) for p in policies] == list(range(SMALL.size))
    product = itertools.product(
        SMALL.dl_gain_db, SMALL.dl_max_mcs, SMALL.dl_prb_ratio, SMALL.ul_max_mcs, SMALL.ul_prb_ratio
    )
    assert policies == [Policy(*values) for values in product]


def test_paper_space_index_round_trip():
    for index in range(0, PAPER_SPACE.size, 7):
        assert PAPER_SPACE.index(PAPER_SPACE.policy(index)) == index


def test_arrays_give_every_policys_values_in_index_order():
    arrays = SMALL.arrays()
    assert set(arrays) == set(POLICY_FIELDS)
    for name, array in arrays.items():
        assert array.shape == (SMALL.size,)
        assert array.tolist() == [getattr(SMALL.policy(i), name) for i in range(SMALL.size)]
    assert np.issubdtype(arrays["dl_max_mcs"].dtype, np.integer)


def test_to_thresholds_gives_the_five_keys_as_plain_python_numbers():
    thresholds = Policy(np.float64(-3.0), np.int64(22), 0.6, 9, np.float32(0.5)).to_thresholds()
    assert thresholds == {
        "dl_gain_db": -3.0,
        "dl_max_mcs": 22,
        "dl_prb_ratio": 0.6,
        "ul_max_mcs": 9,
        "ul_prb_ratio": 0.5,
    }
    assert [type(v) for v in thresholds.values()] == [float, int, float, int, float]


def test_sequences_are_stored_as_tuples_of_plain_numbers():
    space = PolicySpace([0], [np.int64(3)], [1], [4], [np.float64(0.5)])
    assert space.dl_gain_db == (0.0,)
    assert type(space.dl_max_mcs[0]) is int
    assert type(space.dl_prb_ratio[0]) is float
    assert hash(space) == hash(PolicySpace((0.0,), (3,), (1.0,), (4,), (0.5,)))


@pytest.mark.parametrize(
    "field, values",
    [
        ("dl_gain_db", ()),
        ("dl_gain_db", (1.0,)),
        ("dl_gain_db", (float("nan"),)),
        ("dl_max_mcs", (29,)),
        ("dl_max_mcs", (-1,)),
        ("dl_max_mcs", (5.5,)),
        ("dl_prb_ratio", (1.2,)),
        ("dl_prb_ratio", ("half",)),
        ("ul_max_mcs", (3, 3)),
        ("ul_prb_ratio", (-0.1,)),
        ("ul_prb_ratio", 0.5),
    ],
)
def test_invalid_spaces_are_refused_naming_the_field(field, values):
    good = {
        "dl_gain_db": (0.0,),
        "dl_max_mcs": (0,),
        "dl_prb_ratio": (1.0,),
        "ul_max_mcs": (0,),
        "ul_prb_ratio": (1.0,),
    }
    with pytest.raises(ValueError, match=f"policy space {field}"):
        PolicySpace(**{**good, field: values})


def test_index_of_a_value_outside_the_space_names_the_field():
    with pytest.raises(ValueError, match="dl_max_mcs=12"):
        PAPER_SPACE.index(Policy(0.0, 12, 0.2, 5, 0.2))


@pytest.mark.parametrize("index", [-1, 1080])
def test_policy_index_out_of_range_is_refused(index):
    with pytest.raises(IndexError):
        PAPER_SPACE.policy(index)
