"""The `dataset_dlul.csv` layout loader and replay source, on a small file written here
(we have no copy of the public dataset, and nothing here is about its data)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.policy_space import PolicySpace
from hil.reward import RewardParams, reward
from tools.replay.dataset import (
    PAPER_PLATFORM,
    DatasetEnvironment,
    DatasetSource,
    load_dlul,
    parse_filters,
)
from tools.replay.runner import ReplayError, ReplaySpec, run_replay

SPACE = PolicySpace(dl_gain_db=(0.0,), dl_max_mcs=(5, 27), dl_prb_ratio=(0.2, 1.0),
                    ul_max_mcs=(5, 23), ul_prb_ratio=(0.2, 1.0))
PARAMS = RewardParams(delta=1.5, power_min_w=9.0, power_max_w=16.0)


def write_dataset(path: Path) -> pd.DataFrame:
    """Every policy of SPACE at two channel states, then a failed row and an off-grid row."""
    rows = []
    for mcs_dl in (5, 27):
        for air_dl in (0.2, 1.0):
            for mcs_ul in (5, 23):
                for air_ul in (0.2, 1.0):
                    for cqi in (2.0, 14.0):
                        good = cqi > 7
                        rows.append({
                            "selected_mcs_dl": mcs_dl, "selected_airtime_dl": air_dl,
                            "selected_mcs_ul": mcs_ul, "selected_airtime_ul": air_ul,
                            "txgain_dl": 80, "txgain_ul": 80,
                            "traffic_load_dl": 30.0, "traffic_load_ul": 20.0,
                            "thr_dl": air_dl * (mcs_dl + 3) * (1.0 if good else 0.1),
                            "thr_ul": air_ul * (mcs_ul + 3) * (0.8 if good else 0.1),
                            "bler_dl": 0.01, "bler_ul": 0.02, "cqi_dl": cqi, "cqi_ul": cqi,
                            "mean_snr_ul": 2 * cqi, "pm_power": 9.0 + air_dl * 3 + air_ul * 2,
                            "pm_var": 0.1, "rapl_power": 4.0, "failed_experiment": 0,
                        })
    frame = pd.DataFrame(rows)
    failed = dict(rows[0], failed_experiment=1, pm_power=99.0)
    off_grid = dict(rows[0], selected_mcs_dl=16)
    frame = pd.concat([frame, pd.DataFrame([failed, off_grid])], ignore_index=True)
    frame.to_csv(path, index=False)
    return frame


def test_rows_map_to_policies_and_failed_or_off_grid_rows_are_dropped(tmp_path):
    write_dataset(tmp_path / "d.csv")
    data = load_dlul(tmp_path / "d.csv", SPACE)
    assert (data.dropped_failed, data.dropped_off_grid, len(data.rows)) == (1, 1, 32)
    for row, index in zip(data.rows.itertuples(), data.policy):
        policy = SPACE.policy(int(index))
        assert (policy.dl_max_mcs, policy.dl_prb_ratio, policy.ul_max_mcs,
                policy.ul_prb_ratio) == (row.selected_mcs_dl, row.selected_airtime_dl,
                                         row.selected_mcs_ul, row.selected_airtime_ul)


def test_each_policy_is_rated_by_its_measurement_nearest_the_context(tmp_path):
    frame = write_dataset(tmp_path / "d.csv")
    env = DatasetEnvironment(load_dlul(tmp_path / "d.csv", SPACE), "A", seed=0, params=PARAMS)
    block = env.block(0, 3)  # scenario A: CQI 15, demand 32 / 23 Mb/s every round
    assert env.n_actions == 16
    for action, index in enumerate(env.policies):
        p = SPACE.policy(int(index))
        good = frame[(frame.selected_mcs_dl == p.dl_max_mcs)
                     & (frame.selected_airtime_dl == p.dl_prb_ratio)
                     & (frame.selected_mcs_ul == p.ul_max_mcs)
                     & (frame.selected_airtime_ul == p.ul_prb_ratio)
                     & (frame.cqi_dl == 14.0) & (frame.failed_experiment == 0)].iloc[0]
        _, _, expected = reward(min(good.thr_dl, 32.0), 32.0, min(good.thr_ul, 23.0), 23.0,
                                good.pm_power, PARAMS)
        assert block.reward[:, action] == pytest.approx(np.full(3, expected))
        assert block.power_w[0, action] == good.pm_power


def test_a_missing_column_or_a_bad_value_is_named(tmp_path):
    frame = write_dataset(tmp_path / "d.csv")
    frame.drop(columns=["thr_ul"]).to_csv(tmp_path / "no-thr.csv", index=False)
    with pytest.raises(ReplayError, match="missing column.*thr_ul"):
        load_dlul(tmp_path / "no-thr.csv", SPACE)
    frame = frame.astype({"pm_power": object})
    frame.loc[3, "pm_power"] = "n/a"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ReplayError, match="column pm_power, data row 4: 'n/a'"):
        load_dlul(tmp_path / "bad.csv", SPACE)


def test_agents_replay_on_the_dataset_source(tmp_path):
    write_dataset(tmp_path / "d.csv")
    spec = ReplaySpec(DatasetSource(tmp_path / "d.csv", "B", SPACE, PARAMS), ("bsvbs",), (0,),
                      400)
    assert not run_replay(spec, tmp_path / "out").interrupted
    result = np.load(tmp_path / "out/results/bsvbs/seed-0.npz")
    assert result["action"].max() < 16 and np.all((result["reward"] >= 0)
                                                   & (result["reward"] <= 1))


def test_the_authors_filters_keep_only_the_paper_s_experiment(tmp_path):
    """cpu_platform (the NUC), fixed_mcs_flag 0 (MCS as a cap) and BW 50 by default, as the
    dataset's authors select before any analysis; TM is kept whatever it is."""
    frame = write_dataset(tmp_path / "plain.csv")
    experiments = []
    for platform, flag, bw in ((PAPER_PLATFORM, 0, 50), ("Intel(R) Core(TM) i7-6700 CPU", 0, 50),
                               (PAPER_PLATFORM, 1, 50), (PAPER_PLATFORM, 0, 25)):
        experiments.append(frame.assign(cpu_platform=platform, fixed_mcs_flag=flag, BW=bw, TM=1,
                                        pm_power=frame["pm_power"] + 10 * len(experiments)))
    pd.concat(experiments).to_csv(tmp_path / "d.csv", index=False)

    data = load_dlul(tmp_path / "d.csv", SPACE)
    assert len(data.rows) == 32 and data.rows["pm_power"].max() < 19  # the first experiment
    assert data.dropped_by_filter == {"cpu_platform": 34, "fixed_mcs_flag": 34, "BW": 34}
    forced = load_dlul(tmp_path / "d.csv", SPACE, parse_filters(["fixed_mcs_flag=1"]))
    assert forced.rows["pm_power"].min() >= 29 and forced.rows["pm_power"].max() < 39  # third
    every = load_dlul(tmp_path / "d.csv", SPACE, parse_filters(
        ["cpu_platform=any", "fixed_mcs_flag=any", "BW=any"]))
    assert len(every.rows) == 4 * 32


def test_a_filter_that_leaves_no_row_names_the_values_there_are(tmp_path):
    frame = write_dataset(tmp_path / "plain.csv")
    frame.assign(BW=25).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(ReplayError, match=r"no row has BW = 50 \(there are: 25\)"):
        load_dlul(tmp_path / "d.csv", SPACE)
    with pytest.raises(ReplayError, match="KEY one of cpu_platform, fixed_mcs_flag, BW, TM"):
        parse_filters(["bw=50"])
