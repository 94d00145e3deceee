"""The task itself, in one home: the six intensities predicted, how a clip is named, and the
submission file the challenge accepts. Light: nothing but the standard library.
"""

from __future__ import annotations

import re

EMOTIONS: tuple[str, ...] = (
    "Admiration",
    "Amusement",
    "Determination",
    "Empathic Pain",
    "Excitement",
    "Joy",
)
ID_COLUMN = "Filename"  # the id column of every split CSV and of a submission
ID_WIDTH = 5  # ids are digits zero-padded to five ("00042"); see `dataset.pad_id`
CHALLENGE_ID = re.compile(rf"^\d{{{ID_WIDTH}}}$")
SUBMISSION_HEADER = (ID_COLUMN, *EMOTIONS)  # then one row per requested id, sorted, in [0, 1]
