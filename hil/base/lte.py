"""3GPP LTE link facts (TS 36.213): the one place the project looks up MCS, TBS and CQI.

Everything here is pure numpy and vectorised: arguments may be scalars or arrays, they
broadcast against each other, and results are numpy arrays (0-d for scalar input). The
emulator calls these per TTI for whole windows at once, so no function loops in Python
over elements.

Two kinds of content live here:

* spec tables, copied as data from TS 36.213 (MCS -> I_TBS and Qm, the TBS table, the CQI
  efficiency table);
* a small link model built on them (CQI <-> SNR, the SNR each MCS needs, link adaptation)
  that the emulator uses in place of a real PHY. Its anchors are the CQI/SNR pairs the
  BSvBS paper reports for its testbed (Kalntis, Iosifidis, Kuipers, "Adaptive Resource
  Allocation for Virtualized Base Stations in O-RAN with Online Learning", footnote 13).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from hil.base.thresholds import MAX_MCS, MAX_PRB

Direction = Literal["dl", "ul"]

N_ITBS = 27

# ----------------------------------------------------------------------------- spec tables
# MCS -> I_TBS, TS 36.213 Table 7.1.7.1-1 (PDSCH) and Table 8.6.1-1 (PUSCH). The repeated
# I_TBS entries (DL MCS 10 and 17, UL MCS 11 and 21) are the modulation switch points: the
# same transport block, sent with the next higher modulation order.
_ITBS_BY_MCS: dict[str, np.ndarray] = {
    "dl": np.r_[0:10, 9, 10:16, 15, 16:27],
    "ul": np.r_[0:11, 10, 11:20, 19, 20:27],
}
# Modulation order Qm (2 = QPSK, 4 = 16QAM, 6 = 64QAM) by MCS, same tables.
_QM_BY_MCS: dict[str, np.ndarray] = {
    "dl": np.repeat([2, 4, 6], [10, 7, 12]),
    "ul": np.repeat([2, 4, 6], [11, 10, 8]),
}

# Transport block size in bits, TS 36.213 Table 7.1.7.2.1-1 (single layer, I_TBS 0..26 by
# N_PRB 1..110; the 256QAM rows I_TBS 27..33 of later releases are not modelled). Each block
# below is one I_TBS row, ten N_PRB values per line (1-10, 11-20, ...), so the fifth line
# ends at N_PRB = 50. Transcribed from ETSI TS 136 213 V12.13.0 (as tabulated in srsRAN_4G)
# and checked cell by cell against ns-3's independent v8.8.0 transcription: 2969 of the
# 2970 cells agree. The exception, (I_TBS 6, N_PRB 1) = 328 in the spec, is larger than its
# neighbours in both directions: a long-standing typo that srsRAN keeps and ns-3 replaces
# with 88; we keep the spec's 328. Rows are non-decreasing in N_PRB except at that cell,
# with many repeats.
_TBS_TABLE_TEXT = """
i_tbs 0
     16     32     56     88    120    152    176    208    224    256
    288    328    344    376    392    424    456    488    504    536
    568    600    616    648    680    712    744    776    776    808
    840    872    904    936    968   1000   1032   1032   1064   1096
   1128   1160   1192   1224   1256   1256   1288   1320   1352   1384
   1416   1416   1480   1480   1544   1544   1608   1608   1608   1672
   1672   1736   1736   1800   1800   1800   1864   1864   1928   1928
   1992   1992   2024   2088   2088   2088   2152   2152   2216   2216
   2280   2280   2280   2344   2344   2408   2408   2472   2472   2536
   2536   2536   2600   2600   2664   2664   2728   2728   2728   2792
   2792   2856   2856   2856   2984   2984   2984   2984   2984   3112
i_tbs 1
     24     56     88    144    176    208    224    256    328    344
    376    424    456    488    520    568    600    632    680    712
    744    776    808    872    904    936    968   1000   1032   1064
   1128   1160   1192   1224   1256   1288   1352   1384   1416   1416
   1480   1544   1544   1608   1608   1672   1736   1736   1800   1800
   1864   1864   1928   1992   1992   2024   2088   2088   2152   2152
   2216   2280   2280   2344   2344   2408   2472   2472   2536   2536
   2600   2600   2664   2728   2728   2792   2792   2856   2856   2856
   2984   2984   2984   3112   3112   3112   3240   3240   3240   3240
   3368   3368   3368   3496   3496   3496   3496   3624   3624   3624
   3752   3752   3752   3752   3880   3880   3880   4008   4008   4008
i_tbs 2
     32     72    144    176    208    256    296    328    376    424
    472    520    568    616    648    696    744    776    840    872
    936    968   1000   1064   1096   1160   1192   1256   1288   1320
   1384   1416   1480   1544   1544   1608   1672   1672   1736   1800
   1800   1864   1928   1992   2024   2088   2088   2152   2216   2216
   2280   2344   2344   2408   2472   2536   2536   2600   2664   2664
   2728   2792   2856   2856   2856   2984   2984   3112   3112   3112
   3240   3240   3240   3368   3368   3368   3496   3496   3496   3624
   3624   3624   3752   3752   3880   3880   3880   4008   4008   4008
   4136   4136   4136   4264   4264   4264   4392   4392   4392   4584
   4584   4584   4584   4584   4776   4776   4776   4776   4968   4968
i_tbs 3
     40    104    176    208    256    328    392    440    504    568
    616    680    744    808    872    904    968   1032   1096   1160
   1224   1256   1320   1384   1416   1480   1544   1608   1672   1736
   1800   1864   1928   1992   2024   2088   2152   2216   2280   2344
   2408   2472   2536   2536   2600   2664   2728   2792   2856   2856
   2984   2984   3112   3112   3240   3240   3368   3368   3496   3496
   3624   3624   3624   3752   3752   3880   3880   4008   4008   4136
   4136   4264   4264   4392   4392   4392   4584   4584   4584   4776
   4776   4776   4776   4968   4968   4968   5160   5160   5160   5352
   5352   5352   5352   5544   5544   5544   5736   5736   5736   5736
   5992   5992   5992   5992   6200   6200   6200   6200   6456   6456
i_tbs 4
     56    120    208    256    328    408    488    552    632    696
    776    840    904   1000   1064   1128   1192   1288   1352   1416
   1480   1544   1608   1736   1800   1864   1928   1992   2088   2152
   2216   2280   2344   2408   2472   2600   2664   2728   2792   2856
   2984   2984   3112   3112   3240   3240   3368   3496   3496   3624
   3624   3752   3752   3880   4008   4008   4136   4136   4264   4264
   4392   4392   4584   4584   4584   4776   4776   4968   4968   4968
   5160   5160   5160   5352   5352   5544   5544   5544   5736   5736
   5736   5992   5992   5992   5992   6200   6200   6200   6456   6456
   6456   6456   6712   6712   6712   6968   6968   6968   6968   7224
   7224   7224   7480   7480   7480   7480   7736   7736   7736   7992
i_tbs 5
     72    144    224    328    424    504    600    680    776    872
    968   1032   1128   1224   1320   1384   1480   1544   1672   1736
   1864   1928   2024   2088   2216   2280   2344   2472   2536   2664
   2728   2792   2856   2984   3112   3112   3240   3368   3496   3496
   3624   3752   3752   3880   4008   4008   4136   4264   4392   4392
   4584   4584   4776   4776   4776   4968   4968   5160   5160   5352
   5352   5544   5544   5736   5736   5736   5992   5992   5992   6200
   6200   6200   6456   6456   6712   6712   6712   6968   6968   6968
   7224   7224   7224   7480   7480   7480   7736   7736   7736   7992
   7992   7992   8248   8248   8248   8504   8504   8760   8760   8760
   8760   9144   9144   9144   9144   9528   9528   9528   9528   9528
i_tbs 6
    328    176    256    392    504    600    712    808    936   1032
   1128   1224   1352   1480   1544   1672   1736   1864   1992   2088
   2216   2280   2408   2472   2600   2728   2792   2984   2984   3112
   3240   3368   3496   3496   3624   3752   3880   4008   4136   4136
   4264   4392   4584   4584   4776   4776   4968   4968   5160   5160
   5352   5352   5544   5736   5736   5992   5992   5992   6200   6200
   6456   6456   6456   6712   6712   6968   6968   6968   7224   7224
   7480   7480   7736   7736   7736   7992   7992   8248   8248   8248
   8504   8504   8760   8760   8760   9144   9144   9144   9144   9528
   9528   9528   9528   9912   9912   9912  10296  10296  10296  10296
  10680  10680  10680  10680  11064  11064  11064  11448  11448  11448
i_tbs 7
    104    224    328    472    584    712    840    968   1096   1224
   1320   1480   1608   1672   1800   1928   2088   2216   2344   2472
   2536   2664   2792   2984   3112   3240   3368   3368   3496   3624
   3752   3880   4008   4136   4264   4392   4584   4584   4776   4968
   4968   5160   5352   5352   5544   5736   5736   5992   5992   6200
   6200   6456   6456   6712   6712   6712   6968   6968   7224   7224
   7480   7480   7736   7736   7992   7992   8248   8248   8504   8504
   8760   8760   8760   9144   9144   9144   9528   9528   9528   9912
   9912   9912  10296  10296  10296  10680  10680  10680  11064  11064
  11064  11448  11448  11448  11448  11832  11832  11832  12216  12216
  12216  12576  12576  12576  12960  12960  12960  12960  13536  13536
i_tbs 8
    120    256    392    536    680    808    968   1096   1256   1384
   1544   1672   1800   1928   2088   2216   2344   2536   2664   2792
   2984   3112   3240   3368   3496   3624   3752   3880   4008   4264
   4392   4584   4584   4776   4968   4968   5160   5352   5544   5544
   5736   5992   5992   6200   6200   6456   6456   6712   6968   6968
   7224   7224   7480   7480   7736   7736   7992   7992   8248   8504
   8504   8760   8760   9144   9144   9144   9528   9528   9528   9912
   9912   9912  10296  10296  10680  10680  10680  11064  11064  11064
  11448  11448  11448  11832  11832  12216  12216  12216  12576  12576
  12576  12960  12960  12960  13536  13536  13536  13536  14112  14112
  14112  14112  14688  14688  14688  14688  15264  15264  15264  15264
i_tbs 9
    136    296    456    616    776    936   1096   1256   1416   1544
   1736   1864   2024   2216   2344   2536   2664   2856   2984   3112
   3368   3496   3624   3752   4008   4136   4264   4392   4584   4776
   4968   5160   5160   5352   5544   5736   5736   5992   6200   6200
   6456   6712   6712   6968   6968   7224   7480   7480   7736   7992
   7992   8248   8248   8504   8760   8760   9144   9144   9144   9528
   9528   9912   9912  10296  10296  10296  10680  10680  11064  11064
  11064  11448  11448  11832  11832  11832  12216  12216  12576  12576
  12960  12960  12960  13536  13536  13536  13536  14112  14112  14112
  14112  14688  14688  14688  15264  15264  15264  15264  15840  15840
  15840  16416  16416  16416  16416  16992  16992  16992  16992  17568
i_tbs 10
    144    328    504    680    872   1032   1224   1384   1544   1736
   1928   2088   2280   2472   2664   2792   2984   3112   3368   3496
   3752   3880   4008   4264   4392   4584   4776   4968   5160   5352
   5544   5736   5736   5992   6200   6200   6456   6712   6712   6968
   7224   7480   7480   7736   7992   7992   8248   8504   8504   8760
   9144   9144   9144   9528   9528   9912   9912  10296  10296  10680
  10680  11064  11064  11448  11448  11448  11832  11832  12216  12216
  12576  12576  12960  12960  12960  13536  13536  13536  14112  14112
  14112  14688  14688  14688  14688  15264  15264  15264  15840  15840
  15840  16416  16416  16416  16992  16992  16992  16992  17568  17568
  17568  18336  18336  18336  18336  18336  19080  19080  19080  19080
i_tbs 11
    176    376    584    776   1000   1192   1384   1608   1800   2024
   2216   2408   2600   2792   2984   3240   3496   3624   3880   4008
   4264   4392   4584   4776   4968   5352   5544   5736   5992   5992
   6200   6456   6712   6968   6968   7224   7480   7736   7736   7992
   8248   8504   8760   8760   9144   9144   9528   9528   9912   9912
  10296  10680  10680  11064  11064  11448  11448  11832  11832  12216
  12216  12576  12576  12960  12960  13536  13536  13536  14112  14112
  14112  14688  14688  14688  15264  15264  15840  15840  15840  16416
  16416  16416  16992  16992  16992  17568  17568  17568  18336  18336
  18336  18336  19080  19080  19080  19080  19848  19848  19848  19848
  20616  20616  20616  21384  21384  21384  21384  22152  22152  22152
i_tbs 12
    208    440    680    904   1128   1352   1608   1800   2024   2280
   2472   2728   2984   3240   3368   3624   3880   4136   4392   4584
   4776   4968   5352   5544   5736   5992   6200   6456   6712   6712
   6968   7224   7480   7736   7992   8248   8504   8760   8760   9144
   9528   9528   9912   9912  10296  10680  10680  11064  11064  11448
  11832  11832  12216  12216  12576  12576  12960  12960  13536  13536
  14112  14112  14112  14688  14688  15264  15264  15264  15840  15840
  16416  16416  16416  16992  16992  17568  17568  17568  18336  18336
  18336  19080  19080  19080  19080  19848  19848  19848  20616  20616
  20616  21384  21384  21384  21384  22152  22152  22152  22920  22920
  22920  23688  23688  23688  23688  24496  24496  24496  24496  25456
i_tbs 13
    224    488    744   1000   1256   1544   1800   2024   2280   2536
   2856   3112   3368   3624   3880   4136   4392   4584   4968   5160
   5352   5736   5992   6200   6456   6712   6968   7224   7480   7736
   7992   8248   8504   8760   9144   9144   9528   9912   9912  10296
  10680  10680  11064  11448  11448  11832  12216  12216  12576  12960
  12960  13536  13536  14112  14112  14688  14688  14688  15264  15264
  15840  15840  16416  16416  16992  16992  16992  17568  17568  18336
  18336  18336  19080  19080  19080  19848  19848  19848  20616  20616
  20616  21384  21384  21384  22152  22152  22152  22920  22920  22920
  23688  23688  23688  24496  24496  24496  25456  25456  25456  25456
  26416  26416  26416  26416  27376  27376  27376  27376  28336  28336
i_tbs 14
    256    552    840   1128   1416   1736   1992   2280   2600   2856
   3112   3496   3752   4008   4264   4584   4968   5160   5544   5736
   5992   6200   6456   6968   7224   7480   7736   7992   8248   8504
   8760   9144   9528   9912   9912  10296  10680  11064  11064  11448
  11832  12216  12216  12576  12960  12960  13536  13536  14112  14112
  14688  14688  15264  15264  15840  15840  16416  16416  16992  16992
  17568  17568  18336  18336  18336  19080  19080  19848  19848  19848
  20616  20616  20616  21384  21384  22152  22152  22152  22920  22920
  22920  23688  23688  24496  24496  24496  25456  25456  25456  25456
  26416  26416  26416  27376  27376  27376  28336  28336  28336  28336
  29296  29296  29296  29296  30576  30576  30576  30576  31704  31704
i_tbs 15
    280    600    904   1224   1544   1800   2152   2472   2728   3112
   3368   3624   4008   4264   4584   4968   5160   5544   5736   6200
   6456   6712   6968   7224   7736   7992   8248   8504   8760   9144
   9528   9912  10296  10296  10680  11064  11448  11832  11832  12216
  12576  12960  12960  13536  13536  14112  14688  14688  15264  15264
  15840  15840  16416  16416  16992  16992  17568  17568  18336  18336
  18336  19080  19080  19848  19848  20616  20616  20616  21384  21384
  22152  22152  22152  22920  22920  23688  23688  23688  24496  24496
  24496  25456  25456  25456  26416  26416  26416  27376  27376  27376
  28336  28336  28336  29296  29296  29296  29296  30576  30576  30576
  30576  31704  31704  31704  31704  32856  32856  32856  34008  34008
i_tbs 16
    328    632    968   1288   1608   1928   2280   2600   2984   3240
   3624   3880   4264   4584   4968   5160   5544   5992   6200   6456
   6712   7224   7480   7736   7992   8504   8760   9144   9528   9912
   9912  10296  10680  11064  11448  11832  12216  12216  12576  12960
  13536  13536  14112  14112  14688  14688  15264  15840  15840  16416
  16416  16992  16992  17568  17568  18336  18336  19080  19080  19848
  19848  19848  20616  20616  21384  21384  22152  22152  22152  22920
  22920  23688  23688  24496  24496  24496  25456  25456  25456  26416
  26416  26416  27376  27376  27376  28336  28336  28336  29296  29296
  29296  30576  30576  30576  30576  31704  31704  31704  31704  32856
  32856  32856  34008  34008  34008  34008  35160  35160  35160  35160
i_tbs 17
    336    696   1064   1416   1800   2152   2536   2856   3240   3624
   4008   4392   4776   5160   5352   5736   6200   6456   6712   7224
   7480   7992   8248   8760   9144   9528   9912  10296  10296  10680
  11064  11448  11832  12216  12576  12960  13536  13536  14112  14688
  14688  15264  15264  15840  16416  16416  16992  17568  17568  18336
  18336  19080  19080  19848  19848  20616  20616  20616  21384  21384
  22152  22152  22920  22920  23688  23688  24496  24496  24496  25456
  25456  26416  26416  26416  27376  27376  27376  28336  28336  29296
  29296  29296  30576  30576  30576  30576  31704  31704  31704  32856
  32856  32856  34008  34008  34008  35160  35160  35160  35160  36696
  36696  36696  36696  37888  37888  37888  39232  39232  39232  39232
i_tbs 18
    376    776   1160   1544   1992   2344   2792   3112   3624   4008
   4392   4776   5160   5544   5992   6200   6712   7224   7480   7992
   8248   8760   9144   9528   9912  10296  10680  11064  11448  11832
  12216  12576  12960  13536  14112  14112  14688  15264  15264  15840
  16416  16416  16992  17568  17568  18336  18336  19080  19080  19848
  19848  20616  21384  21384  22152  22152  22920  22920  23688  23688
  24496  24496  24496  25456  25456  26416  26416  27376  27376  27376
  28336  28336  29296  29296  29296  30576  30576  30576  31704  31704
  31704  32856  32856  32856  34008  34008  34008  35160  35160  35160
  36696  36696  36696  37888  37888  37888  37888  39232  39232  39232
  40576  40576  40576  40576  42368  42368  42368  42368  43816  43816
i_tbs 19
    408    840   1288   1736   2152   2600   2984   3496   3880   4264
   4776   5160   5544   5992   6456   6968   7224   7736   8248   8504
   9144   9528   9912  10296  10680  11064  11448  12216  12576  12960
  13536  13536  14112  14688  15264  15264  15840  16416  16992  16992
  17568  18336  18336  19080  19080  19848  20616  20616  21384  21384
  22152  22152  22920  22920  23688  24496  24496  25456  25456  25456
  26416  26416  27376  27376  28336  28336  29296  29296  29296  30576
  30576  30576  31704  31704  32856  32856  32856  34008  34008  34008
  35160  35160  35160  36696  36696  36696  37888  37888  37888  39232
  39232  39232  40576  40576  40576  40576  42368  42368  42368  43816
  43816  43816  43816  45352  45352  45352  46888  46888  46888  46888
i_tbs 20
    440    904   1384   1864   2344   2792   3240   3752   4136   4584
   5160   5544   5992   6456   6968   7480   7992   8248   8760   9144
   9912  10296  10680  11064  11448  12216  12576  12960  13536  14112
  14688  14688  15264  15840  16416  16992  16992  17568  18336  18336
  19080  19848  19848  20616  20616  21384  22152  22152  22920  22920
  23688  24496  24496  25456  25456  26416  26416  27376  27376  28336
  28336  29296  29296  29296  30576  30576  31704  31704  31704  32856
  32856  34008  34008  34008  35160  35160  35160  36696  36696  36696
  37888  37888  39232  39232  39232  40576  40576  40576  42368  42368
  42368  42368  43816  43816  43816  45352  45352  45352  46888  46888
  46888  46888  48936  48936  48936  48936  48936  51024  51024  51024
i_tbs 21
    488   1000   1480   1992   2472   2984   3496   4008   4584   4968
   5544   5992   6456   6968   7480   7992   8504   9144   9528   9912
  10680  11064  11448  12216  12576  12960  13536  14112  14688  15264
  15840  15840  16416  16992  17568  18336  18336  19080  19848  19848
  20616  21384  21384  22152  22920  22920  23688  24496  24496  25456
  25456  26416  26416  27376  27376  28336  28336  29296  29296  30576
  30576  31704  31704  31704  32856  32856  34008  34008  35160  35160
  35160  36696  36696  36696  37888  37888  39232  39232  39232  40576
  40576  40576  42368  42368  42368  43816  43816  43816  45352  45352
  45352  46888  46888  46888  46888  48936  48936  48936  48936  51024
  51024  51024  51024  52752  52752  52752  52752  55056  55056  55056
i_tbs 22
    520   1064   1608   2152   2664   3240   3752   4264   4776   5352
   5992   6456   6968   7480   7992   8504   9144   9528  10296  10680
  11448  11832  12576  12960  13536  14112  14688  15264  15840  16416
  16992  16992  17568  18336  19080  19080  19848  20616  21384  21384
  22152  22920  22920  23688  24496  24496  25456  25456  26416  27376
  27376  28336  28336  29296  29296  30576  30576  31704  31704  32856
  32856  34008  34008  34008  35160  35160  36696  36696  36696  37888
  37888  39232  39232  40576  40576  40576  42368  42368  42368  43816
  43816  43816  45352  45352  45352  46888  46888  46888  48936  48936
  48936  48936  51024  51024  51024  51024  52752  52752  52752  55056
  55056  55056  55056  57336  57336  57336  57336  59256  59256  59256
i_tbs 23
    552   1128   1736   2280   2856   3496   4008   4584   5160   5736
   6200   6968   7480   7992   8504   9144   9912  10296  11064  11448
  12216  12576  12960  13536  14112  14688  15264  15840  16416  16992
  17568  18336  19080  19848  19848  20616  21384  22152  22152  22920
  23688  24496  24496  25456  25456  26416  27376  27376  28336  28336
  29296  29296  30576  30576  31704  31704  32856  32856  34008  34008
  35160  35160  36696  36696  37888  37888  37888  39232  39232  40576
  40576  40576  42368  42368  43816  43816  43816  45352  45352  45352
  46888  46888  46888  48936  48936  48936  51024  51024  51024  51024
  52752  52752  52752  55056  55056  55056  55056  57336  57336  57336
  57336  59256  59256  59256  59256  61664  61664  61664  61664  63776
i_tbs 24
    584   1192   1800   2408   2984   3624   4264   4968   5544   5992
   6712   7224   7992   8504   9144   9912  10296  11064  11448  12216
  12960  13536  14112  14688  15264  15840  16416  16992  17568  18336
  19080  19848  19848  20616  21384  22152  22920  22920  23688  24496
  25456  25456  26416  26416  27376  28336  28336  29296  29296  30576
  31704  31704  32856  32856  34008  34008  35160  35160  36696  36696
  36696  37888  37888  39232  39232  40576  40576  42368  42368  42368
  43816  43816  45352  45352  45352  46888  46888  46888  48936  48936
  48936  51024  51024  51024  52752  52752  52752  52752  55056  55056
  55056  57336  57336  57336  57336  59256  59256  59256  61664  61664
  61664  61664  63776  63776  63776  63776  66592  66592  66592  66592
i_tbs 25
    616   1256   1864   2536   3112   3752   4392   5160   5736   6200
   6968   7480   8248   8760   9528  10296  10680  11448  12216  12576
  13536  14112  14688  15264  15840  16416  16992  17568  18336  19080
  19848  20616  20616  21384  22152  22920  23688  24496  24496  25456
  26416  26416  27376  28336  28336  29296  29296  30576  31704  31704
  32856  32856  34008  34008  35160  35160  36696  36696  37888  37888
  39232  39232  40576  40576  40576  42368  42368  43816  43816  43816
  45352  45352  46888  46888  46888  48936  48936  48936  51024  51024
  51024  52752  52752  52752  55056  55056  55056  55056  57336  57336
  57336  59256  59256  59256  61664  61664  61664  61664  63776  63776
  63776  63776  66592  66592  66592  66592  68808  68808  68808  71112
i_tbs 26
    712   1480   2216   2984   3752   4392   5160   5992   6712   7480
   8248   8760   9528  10296  11064  11832  12576  13536  14112  14688
  15264  16416  16992  17568  18336  19080  19848  20616  21384  22152
  22920  23688  24496  25456  25456  26416  27376  28336  29296  29296
  30576  30576  31704  32856  32856  34008  35160  35160  36696  36696
  37888  37888  39232  40576  40576  40576  42368  42368  43816  43816
  45352  45352  46888  46888  48936  48936  48936  51024  51024  52752
  52752  52752  55056  55056  55056  55056  57336  57336  57336  59256
  59256  59256  61664  61664  61664  63776  63776  63776  66592  66592
  66592  68808  68808  68808  71112  71112  71112  73712  73712  75376
  75376  75376  75376  75376  75376  75376  75376  75376  75376  75376
"""


def _parse_tbs_table(text: str) -> np.ndarray:
    """Decode `_TBS_TABLE_TEXT` once at import; a mangled edit fails loudly here."""
    rows = [block.split() for block in text.split("i_tbs")[1:]]
    labels = [int(row[0]) for row in rows]
    table = np.array([row[1:] for row in rows], dtype=np.int32)
    if labels != list(range(N_ITBS)) or table.shape != (N_ITBS, MAX_PRB):
        raise RuntimeError(f"TBS table text: labels {labels}, shape {table.shape}")
    return table


TBS_TABLE: np.ndarray = _parse_tbs_table(_TBS_TABLE_TEXT)

# Spectral efficiency (bits per modulation symbol) of CQI 0..15, TS 36.213 Table 7.2.3-1
# (the 64QAM table). CQI 0 means "out of range"; its 0.0 lets interpolation start at zero.
CQI_EFFICIENCY: np.ndarray = np.array([
    0.0, 0.1523, 0.2344, 0.3770, 0.6016, 0.8770, 1.1758, 1.4766,
    1.9141, 2.4063, 2.7305, 3.3223, 3.9023, 4.5234, 5.1152, 5.5547,
])

# Data resource elements per PRB in one subframe, to turn a TBS into bits per symbol.
# DL: 12 x 14 = 168 REs, minus a 3-symbol control region (36) and the cell-specific
# reference signals of two antenna ports outside it (12). UL: 12 subcarriers x 12 SC-FDMA
# symbols (2 of the 14 carry DMRS).
RE_PER_PRB: dict[str, int] = {"dl": 120, "ul": 144}

# Spectral efficiency is taken at the testbed's 10 MHz cell; TBS / N_PRB is nearly flat
# in N_PRB there, so the choice barely matters, but it must be one fixed number.
_EFFICIENCY_N_PRB = 50

# CQI -> SNR anchors measured on the BSvBS testbed (paper footnote 13).
_CQI_ANCHORS = np.array([1.0, 3.0, 13.0, 15.0])
_SNR_ANCHORS_DB = np.array([1.95, 6.0, 25.0, 29.0])


# ----------------------------------------------------------------------------- validation
def _check_direction(direction: str) -> str:
    """`direction` itself if it is "dl" or "ul" (a typo must not fall through to a KeyError)."""
    if direction not in ("dl", "ul"):
        raise ValueError(f"direction must be 'dl' or 'ul', got {direction!r}")
    return direction


def _as_index(values: object, low: int, high: int, what: str) -> np.ndarray:
    """`values` as an int64 array; ValueError naming the first value not a whole low..high.

    Whole-valued floats are accepted because callers often compute MCS or PRB counts with
    float arithmetic; anything fractional would silently truncate, so it is refused.
    """
    arr = np.asarray(values)
    whole = arr == np.round(arr) if arr.dtype.kind == "f" else np.ones(arr.shape, bool)
    bad = ~whole | (arr < low) | (arr > high)
    if bad.any():
        value = arr[bad].flat[0].item()
        raise ValueError(f"{what} {value} is not a whole number in {low}..{high}")
    return arr.astype(np.int64)


# ----------------------------------------------------------------------------- MCS and TBS
def mcs_to_itbs(mcs: object, direction: Direction) -> np.ndarray:
    """TBS index I_TBS of each MCS (0..28) for the direction."""
    table = _ITBS_BY_MCS[_check_direction(direction)]
    return np.asarray(table[_as_index(mcs, 0, MAX_MCS, "MCS")])


def modulation_order(mcs: object, direction: Direction) -> np.ndarray:
    """Modulation order Qm (bits per symbol: 2, 4 or 6) of each MCS for the direction."""
    table = _QM_BY_MCS[_check_direction(direction)]
    return np.asarray(table[_as_index(mcs, 0, MAX_MCS, "MCS")])


# TBS_TABLE with a leading column of zeros, so N_PRB = 0 (nothing scheduled) indexes to 0 bits.
_TBS_WITH_ZERO_PRB = np.hstack([np.zeros((N_ITBS, 1), np.int64), TBS_TABLE.astype(np.int64)])


def tbs_bits(mcs: object, n_prb: object, direction: Direction) -> np.ndarray:
    """Transport block size in bits for MCS (0..28) on n_prb PRBs (0..110); broadcasts."""
    itbs = mcs_to_itbs(mcs, direction)
    return np.asarray(_TBS_WITH_ZERO_PRB[itbs, _as_index(n_prb, 0, MAX_PRB, "N_PRB")])


# Every TBS row as one sorted search key array: row i is shifted up by i * _ROW_STRIDE, which
# exceeds every TBS, so one searchsorted over the flat array serves all rows at once. Rows
# use their running maximum: the first N_PRB whose running maximum reaches a size is the
# first N_PRB whose own TBS does, and the running maximum is sorted even where the spec's
# (I_TBS 6, N_PRB 1) cell is not.
_ROW_STRIDE = float(TBS_TABLE.max() + 1)
_ROW_KEYS = (np.arange(N_ITBS)[:, None] * _ROW_STRIDE
             + np.maximum.accumulate(TBS_TABLE, axis=1)).ravel()


def prbs_needed(mcs: object, bits: object, direction: Direction, max_prb: object) -> np.ndarray:
    """Fewest PRBs (1..max_prb) whose TBS at this MCS carries `bits`; broadcasts.

    0 where bits <= 0 (nothing to send); max_prb where even max_prb PRBs are not enough
    (the scheduler then sends what fits). max_prb has no default on purpose: the cell's
    bandwidth (50 PRB at 10 MHz) is the caller's fact, not this module's.
    """
    itbs = mcs_to_itbs(mcs, direction)
    cap = _as_index(max_prb, 1, MAX_PRB, "max_prb")
    bits = np.asarray(bits, dtype=float)
    if np.isnan(bits).any():
        raise ValueError("bits contains NaN; prbs_needed needs a number of bits to send")
    # A size beyond a row's largest TBS lands at the next row's start: index MAX_PRB.
    key = itbs * _ROW_STRIDE + np.clip(bits, 0.0, _ROW_STRIDE)
    first_index = np.searchsorted(_ROW_KEYS, key, side="left") - itbs * MAX_PRB
    return np.where(bits <= 0, 0, np.minimum(first_index + 1, cap))


# ----------------------------------------------------------------------------- CQI and SNR
def interp_linear_ends(x: object, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise linear through (xp, fp), continued past both ends along the end segments."""
    x = np.asarray(x, dtype=float)
    y = np.interp(x, xp, fp)
    low_slope = (fp[1] - fp[0]) / (xp[1] - xp[0])
    high_slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    y = np.where(x < xp[0], fp[0] + (x - xp[0]) * low_slope, y)
    return np.where(x > xp[-1], fp[-1] + (x - xp[-1]) * high_slope, y)


def cqi_to_snr_db(cqi: object) -> np.ndarray:
    """SNR (dB) of a CQI, continuous: piecewise linear through the testbed's anchors."""
    return interp_linear_ends(cqi, _CQI_ANCHORS, _SNR_ANCHORS_DB)


def snr_db_to_cqi(snr_db: object) -> np.ndarray:
    """Continuous CQI of an SNR (dB): the inverse of `cqi_to_snr_db`, clipped to 0..15."""
    cqi = interp_linear_ends(snr_db, _SNR_ANCHORS_DB, _CQI_ANCHORS)
    return np.asarray(np.clip(cqi, 0.0, 15.0))


# ----------------------------------------------------------------------------- link model
def spectral_efficiency(mcs: object, direction: Direction) -> np.ndarray:
    """Bits per data resource element that an MCS carries (TBS at 50 PRB / data REs)."""
    d = _check_direction(direction)
    tbs = TBS_TABLE[mcs_to_itbs(mcs, d), _EFFICIENCY_N_PRB - 1]
    return np.asarray(tbs / (_EFFICIENCY_N_PRB * RE_PER_PRB[d]))


def required_snr_db(mcs: object, direction: Direction) -> np.ndarray:
    """SNR (dB) at which an MCS runs at the link-adaptation BLER target.

    The MCS's efficiency is placed on the CQI scale (CQI k is defined by the efficiency a UE
    can receive at ~10 % BLER), interpolating Table 7.2.3-1 and continuing its last segment
    above CQI 15, then converted with `cqi_to_snr_db`. Non-decreasing in MCS because both
    steps are monotone and TBS grows with I_TBS.
    """
    cqi = interp_linear_ends(spectral_efficiency(mcs, direction), CQI_EFFICIENCY,
                              np.arange(len(CQI_EFFICIENCY), dtype=float))
    return cqi_to_snr_db(cqi)


# Required SNR of MCS 0..28, sorted (non-decreasing), so link adaptation is one searchsorted.
_LA_THRESHOLD_SNR_DB = {d: required_snr_db(np.arange(MAX_MCS + 1), d) for d in ("dl", "ul")}


def la_mcs(cqi: object, direction: Direction) -> np.ndarray:
    """Link adaptation: the highest MCS whose required SNR the CQI's SNR meets (at least 0).

    `cqi` may be continuous (e.g. an average). Where two MCS share a required SNR (same
    I_TBS) the higher one, with the higher modulation order, is chosen.
    """
    snr_db = cqi_to_snr_db(cqi)
    if np.isnan(snr_db).any():
        raise ValueError("cqi contains NaN; la_mcs needs a CQI between 0 and 15")
    thresholds = _LA_THRESHOLD_SNR_DB[_check_direction(direction)]
    return np.asarray(np.maximum(np.searchsorted(thresholds, snr_db, side="right") - 1, 0))
